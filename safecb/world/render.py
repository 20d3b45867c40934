"""Deterministic procedural renderer for the toy world.

A scene is a background plus one or two objects (or none: a background-only scene, used as a
negative by the oracle). Drawing happens on a 4x supersampled canvas with PIL and is box-filtered
down to IMAGE_SIZE, so edges are anti-aliased. An image depends only on (spec, seed).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw

from .vocab import (
    ALL_COLOURS,
    BACKGROUNDS,
    COLOUR_NAMEABLE,
    COLOURS,
    CONCEPTS,
    HARMFUL,
    HOLDABLE,
    IMAGE_SIZE,
    LUMA_WEIGHTS,
    OBJECT_COLOURS,
    RELATIONS,
)

SUPERSAMPLE = 4
CANVAS = IMAGE_SIZE * SUPERSAMPLE  # drawing happens at this resolution

RGB = tuple[int, int, int]
Point = tuple[float, float]
Draw = ImageDraw.ImageDraw
Rng = np.random.Generator


@dataclass(frozen=True)
class SceneSpec:
    background: str  # a key of BACKGROUNDS
    objects: tuple[str, ...]  # 1 or 2 distinct object names (0 = background only)
    relation: str = "and"  # "and", or "holding": a person holding objects[1]
    colours: tuple[str, ...] = ()  # per object, a named colour family or "" (the seed picks); () = none named

    def __post_init__(self) -> None:
        object.__setattr__(self, "objects", tuple(self.objects))
        colours = tuple(self.colours)
        object.__setattr__(self, "colours", colours if any(colours) else ())
        if self.background not in BACKGROUNDS:
            raise ValueError(
                f"unknown background {self.background!r}; expected one of {sorted(BACKGROUNDS)}"
            )
        for name in self.objects:
            if name not in CONCEPTS:
                raise ValueError(f"unknown object {name!r}; expected one of {list(CONCEPTS)}")
        if len(self.objects) > 2:
            raise ValueError(f"a scene holds at most 2 objects, got {len(self.objects)}")
        if len(set(self.objects)) != len(self.objects):
            raise ValueError(f"objects in a scene must be distinct, got {self.objects}")
        if self.relation not in RELATIONS:
            raise ValueError(f"unknown relation {self.relation!r}; expected one of {RELATIONS}")
        if self.relation == "holding":
            if len(self.objects) != 2 or self.objects[0] != "person":
                raise ValueError("relation 'holding' needs objects ('person', item)")
            if self.objects[1] not in HOLDABLE:
                raise ValueError(
                    f"a person cannot hold {self.objects[1]!r}; holdable items are {HOLDABLE}"
                )
        if self.colours:
            if len(self.colours) != len(self.objects):
                raise ValueError(f"colours {self.colours} must name one entry per object {self.objects}")
            for name, colour in zip(self.objects, self.colours):
                if colour and name not in COLOUR_NAMEABLE:
                    raise ValueError(f"{name!r} takes no colour word (its colour is what it is)")
                if colour and colour not in OBJECT_COLOURS[name]:
                    raise ValueError(f"a {name} is never {colour!r}; it comes in {OBJECT_COLOURS[name]}")

    def colour_of(self, index: int) -> str:
        """The colour family the scene names for objects[index], or "" when the seed picks it."""
        return self.colours[index] if self.colours else ""


def labels(spec: SceneSpec) -> np.ndarray:
    """Multi-hot float32 vector over CONCEPTS of the objects in the scene."""
    out = np.zeros(len(CONCEPTS), dtype=np.float32)
    for name in spec.objects:
        out[CONCEPTS.index(name)] = 1.0
    return out


def is_unsafe(spec: SceneSpec) -> bool:
    return any(name in HARMFUL for name in spec.objects)


def scene_rng(spec: SceneSpec, seed: int) -> np.random.Generator:
    """RNG seeded from a stable hash of (spec, seed); Python's hash() is salted per process."""
    key = f"{spec.background}|{','.join(spec.objects)}|{spec.relation}|{int(seed)}"
    if spec.colours:
        key += "|" + ",".join(spec.colours)
    digest = hashlib.sha256(key.encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def render(spec: SceneSpec, seed: int) -> np.ndarray:
    """Render the scene as a uint8 array [IMAGE_SIZE, IMAGE_SIZE, 3]."""
    return _render(spec, seed, track_objects=False)[0]


@dataclass(frozen=True)
class HarmfulSlot:
    """A harmful object of a scene at the moment it is about to be drawn, handed to a `Substitute`."""

    name: str  # the harmful object
    held: bool  # True when a person holds it, False when it stands in the scene
    centre: Point  # canvas point its drawer is placed at (the hand when held)
    size: float  # the side of its drawing box, canvas units
    layer: Image.Image  # RGBA [CANVAS, CANVAS]: the object as `render` draws it, alpha 255 on its pixels
    before: Image.Image  # RGB [CANVAS, CANVAS]: the canvas just before it, i.e. what its pixels cover
    skin: RGB | None  # the holder's skin colour when held

    def draw_in_place(self, d: Draw, name: str, rng: Rng) -> None:
        """Draw object `name` where this one was: a holdable item in the hand, any other object at
        the harmful object's position and size (held: centred on its pixels)."""
        if self.held and name in HOLDABLE:
            _draw_held(d, name, self.centre, self.size, rng)
            return
        cx, cy = self.centre
        if self.held:
            ys, xs = np.nonzero(np.asarray(self.layer)[..., 3])
            cx, cy = float(xs.mean()), float(ys.mean())
        OBJECT_DRAWERS[name](d, cx, cy, self.size, rng)


# Draws something on the RGB canvas in place of a harmful object (drawing nothing erases it).
Substitute = Callable[[Image.Image, HarmfulSlot], None]


def render_substituted(spec: SceneSpec, seed: int, substitute: Substitute) -> np.ndarray:
    """`render` with every harmful object's drawing handed to `substitute` instead of the canvas.

    The harmful object is still drawn, on a transparent layer the substitute receives, so the scene's
    random stream and everything else in the picture stay exactly as in `render`: a substitute that
    pastes `slot.layer` reproduces `render` bit for bit, one that draws nothing leaves what the
    object covered (background, the holder's arm)."""
    return _render(spec, seed, track_objects=False, substitute=substitute)[0]


BACKGROUND_LABEL = len(CONCEPTS)  # patch label of a patch with no object on it
# Over patch label values (CONCEPTS, then BACKGROUND_LABEL): True for the harmful objects.
HARMFUL_PATCH_LABELS = np.array([name in HARMFUL for name in CONCEPTS] + [False])


def render_with_patch_labels(spec: SceneSpec, seed: int, grid: int, min_share: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """The same image as `render`, and a [grid, grid] int array naming what each patch shows: the
    index in CONCEPTS of the object covering the largest share of the patch when that share is at
    least `min_share`, else BACKGROUND_LABEL. Where objects overlap, the one drawn last owns a pixel
    (a held item's grip belongs to the person)."""
    image, shares = render_with_patch_shares(spec, seed, grid)
    best = shares.argmax(-1)
    enough = shares.max(-1) >= min_share
    return image, np.where(enough, best, BACKGROUND_LABEL).astype(np.int64)


def render_with_patch_shares(spec: SceneSpec, seed: int, grid: int, substitute: Substitute | None = None
                             ) -> tuple[np.ndarray, np.ndarray]:
    """The same image as `render` (or `render_substituted` with `substitute`), and a float32
    [grid, grid, len(CONCEPTS)] array: the share of each patch's pixels each object owns (the one
    drawn last owns a pixel). With a substitute, what it drew is credited to the harmful object, so
    one that draws nothing leaves that object no pixels."""
    if CANVAS % grid:
        raise ValueError(f"grid {grid} does not divide the {CANVAS}-px canvas")
    image, owner = _render(spec, seed, track_objects=True, substitute=substitute)
    cell = CANVAS // grid
    blocks = owner.reshape(grid, cell, grid, cell).transpose(0, 2, 1, 3).reshape(grid, grid, cell * cell)
    shares = np.stack([(blocks == c).mean(-1) for c in range(len(CONCEPTS))], -1)
    return image, shares.astype(np.float32)


def _render(spec: SceneSpec, seed: int, track_objects: bool, substitute: Substitute | None = None
            ) -> tuple[np.ndarray, np.ndarray | None]:
    """Draw the scene; with `track_objects`, also a [CANVAS, CANVAS] map of which concept drew each
    canvas pixel last (BACKGROUND_LABEL where none did). Tracking only reads the canvas, so the
    image is the same either way. With `substitute`, harmful objects go through it (see
    `render_substituted`); the owner map then credits whatever it drew to the harmful object."""
    rng = scene_rng(spec, seed)
    image = Image.new("RGB", (CANVAS, CANVAS))
    draw = ImageDraw.Draw(image)
    BACKGROUND_DRAWERS[spec.background](draw, rng)
    s = CANVAS / IMAGE_SIZE  # canvas units per output pixel
    owner = np.full((CANVAS, CANVAS), BACKGROUND_LABEL, dtype=np.int64) if track_objects else None
    canvas_before = np.asarray(image).copy() if track_objects else None

    def drawn_by(name: str) -> None:
        """Credit every canvas pixel changed since the last call to `name`."""
        nonlocal canvas_before
        if owner is None:
            return
        now = np.asarray(image).copy()
        owner[(now != canvas_before).any(-1)] = CONCEPTS.index(name)
        canvas_before = now

    def jitter(amount_px: float) -> float:
        return float(rng.uniform(-amount_px, amount_px)) * s

    def paint(name: str, drawer: Callable[[Draw], None], centre: Point, size: float, held: bool = False,
              skin: RGB | None = None) -> None:
        """Run `drawer` (which draws `name` with the scene's rng) on the canvas, or for a harmful
        object under a substitute, on a transparent layer handed to the substitute."""
        if substitute is None or name not in HARMFUL:
            drawer(draw)
        else:
            layer = Image.new("RGBA", image.size)
            drawer(ImageDraw.Draw(layer))
            substitute(image, HarmfulSlot(name, held, centre, size, layer, image.copy(), skin))
        drawn_by(name)

    colours = [object_colour(rng, name, spec.colour_of(i)) if name in OBJECT_COLOURS else None
               for i, name in enumerate(spec.objects)]
    if len(spec.objects) == 1:
        size = 16.5 * s * rng.uniform(0.9, 1.1)
        name = spec.objects[0]
        cx, cy = 16 * s + jitter(2), 16.5 * s + jitter(2)
        paint(name, lambda d: OBJECT_DRAWERS[name](d, cx, cy, size, rng, colours[0]), (cx, cy), size)
    elif spec.relation == "holding":
        size = 16 * s * rng.uniform(0.92, 1.08)
        cx, cy = 10.5 * s + jitter(1.5), 16 * s + jitter(1.5)
        hand, skin = draw_person(draw, cx, cy, size, rng, colours[0], holding=True)
        drawn_by("person")
        item = spec.objects[1]
        paint(item, lambda d: _draw_held(d, item, hand, 0.72 * size, rng, colours[1]), hand, 0.72 * size,
              True, skin)
        # the fingers close over the item
        draw.ellipse(_box(hand[0], hand[1], 0.05 * size, 0.05 * size), fill=skin)
        drawn_by("person")
    elif len(spec.objects) == 2:
        for name, x, colour in zip(spec.objects, (8.5, 23.5), colours):
            size = 13 * s * rng.uniform(0.9, 1.1)
            cx, cy = x * s + jitter(1.2), 16.5 * s + jitter(2)
            paint(name, lambda d: OBJECT_DRAWERS[name](d, cx, cy, size, rng, colour), (cx, cy), size)

    small = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BOX)
    return np.asarray(small, dtype=np.uint8).copy(), owner


# ---------------------------------------------------------------- drawing helpers


def _jit(rng: Rng, rgb: RGB, amount: int = 12) -> RGB:
    noise = rng.integers(-amount, amount + 1, size=3)
    r, g, b = (int(np.clip(c + n, 0, 255)) for c, n in zip(rgb, noise))
    return r, g, b


def _pick(rng: Rng, palette: list[RGB], amount: int = 12) -> RGB:
    return _jit(rng, palette[int(rng.integers(len(palette)))], amount)


def _darker(rgb: RGB, factor: float = 0.5) -> RGB:
    r, g, b = (int(c * factor) for c in rgb)
    return r, g, b


def _lighter(rgb: RGB, amount: float = 0.45) -> RGB:
    r, g, b = (int(c + (255 - c) * amount) for c in rgb)
    return r, g, b


def _luma(rgb: RGB) -> float:
    return sum(w * c for w, c in zip(LUMA_WEIGHTS, rgb))


def _edge(rgb: RGB) -> RGB:
    """An outline that stands out from `rgb`: darker, or lighter for a dark colour."""
    return _lighter(rgb, 0.5) if _luma(rgb) < 75 else _darker(rgb, 0.45)


def object_colour(rng: Rng, name: str, family: str = "") -> RGB:
    """The main colour of solid object `name`: around `family`, or a family of OBJECT_COLOURS[name]
    picked by the scene's rng."""
    families = OBJECT_COLOURS[name]
    if not family:
        family = families[int(rng.integers(len(families)))]
    return _jit(rng, COLOURS[family], 12)


def _any_colour(rng: Rng) -> RGB:
    return _jit(rng, COLOURS[ALL_COLOURS[int(rng.integers(len(ALL_COLOURS)))]], 12)


def _place(points: list[Point], cx: float, cy: float, s: float, angle: float = 0.0,
           flip: bool = False) -> list[Point]:
    """Map points in object-local units (object spans about [-0.5, 0.5]) onto the canvas."""
    ca, sa = math.cos(angle), math.sin(angle)
    out = []
    for x, y in points:
        x = -x if flip else x
        out.append((cx + s * (x * ca - y * sa), cy + s * (x * sa + y * ca)))
    return out


def _box(cx: float, cy: float, rx: float, ry: float) -> list[float]:
    return [cx - rx, cy - ry, cx + rx, cy + ry]


# ---------------------------------------------------------------- backgrounds


def _horizon(rng: Rng) -> float:
    return CANVAS * rng.uniform(0.45, 0.55)


def _clouds(d: Draw, rng: Rng, horizon: float, colour: RGB) -> None:
    for _ in range(int(rng.integers(1, 3))):
        x, y = rng.uniform(10, CANVAS - 10), rng.uniform(8, horizon - 22)
        w = rng.uniform(12, 20)
        for dx, dy, r in ((-w * 0.6, 3, w * 0.45), (0, 0, w * 0.6), (w * 0.6, 3, w * 0.45)):
            d.ellipse(_box(x + dx, y + dy, r, r * 0.7), fill=colour)


def bg_grass(d: Draw, rng: Rng) -> None:
    h = _horizon(rng)
    d.rectangle([0, 0, CANVAS, h], fill=_jit(rng, (130, 195, 240), 10))
    ground = _jit(rng, (80, 165, 60), 10)
    d.rectangle([0, h, CANVAS, CANVAS], fill=ground)
    _clouds(d, rng, h, _jit(rng, (248, 248, 252), 4))
    for _ in range(6):  # darker grass tufts
        x, y = rng.uniform(0, CANVAS), rng.uniform(h + 6, CANVAS - 4)
        d.line([(x - 3, y), (x, y - 6), (x + 3, y)], fill=_darker(ground, 0.75), width=2)


def bg_beach(d: Draw, rng: Rng) -> None:
    h = _horizon(rng)
    d.rectangle([0, 0, CANVAS, h - 14], fill=_jit(rng, (150, 210, 245), 10))
    d.rectangle([0, h - 14, CANVAS, h + 4], fill=_jit(rng, (30, 110, 190), 10))
    d.rectangle([0, h + 4, CANVAS, CANVAS], fill=_jit(rng, (235, 210, 145), 8))
    d.line([(0, h + 5), (CANVAS, h + 5)], fill=(250, 250, 250), width=2)  # surf line
    _clouds(d, rng, h - 14, _jit(rng, (250, 250, 252), 3))


def bg_snow(d: Draw, rng: Rng) -> None:
    h = _horizon(rng)
    d.rectangle([0, 0, CANVAS, h], fill=_jit(rng, (160, 165, 178), 8))
    d.rectangle([0, h, CANVAS, CANVAS], fill=_jit(rng, (244, 246, 250), 4))
    for _ in range(int(rng.integers(8, 14))):  # falling snowflakes
        x, y = rng.uniform(0, CANVAS), rng.uniform(0, h - 4)
        d.ellipse(_box(x, y, 2, 2), fill=(250, 250, 255))
    for _ in range(2):  # soft blue drifts on the ground
        x, y = rng.uniform(0, CANVAS), rng.uniform(h + 10, CANVAS - 6)
        d.ellipse(_box(x, y, 18, 3), fill=(215, 225, 240))


def bg_night(d: Draw, rng: Rng) -> None:
    h = _horizon(rng)
    d.rectangle([0, 0, CANVAS, h], fill=_jit(rng, (14, 20, 55), 6))
    d.rectangle([0, h, CANVAS, CANVAS], fill=_jit(rng, (34, 40, 82), 6))
    for _ in range(int(rng.integers(4, 8))):
        x, y = rng.uniform(4, CANVAS - 4), rng.uniform(4, h - 6)
        r = rng.uniform(1.5, 2.5)
        d.ellipse(_box(x, y, r, r), fill=_pick(rng, [(255, 255, 255), (255, 240, 170)], 4))


def bg_road(d: Draw, rng: Rng) -> None:
    h = _horizon(rng)
    d.rectangle([0, 0, CANVAS, h], fill=_jit(rng, (205, 215, 225), 8))
    d.rectangle([0, h - 4, CANVAS, h], fill=_jit(rng, (120, 150, 100), 8))  # verge
    d.rectangle([0, h, CANVAS, CANVAS], fill=_jit(rng, (92, 92, 98), 6))
    y = rng.uniform(h + 0.55 * (CANVAS - h), CANVAS - 10)
    lane = _pick(rng, [(250, 250, 250), (245, 205, 40)], 5)
    offset = rng.uniform(0, 28)
    for x in np.arange(-28 + offset, CANVAS, 28):
        d.rectangle([x, y - 2, x + 16, y + 2], fill=lane)


BACKGROUND_DRAWERS = {
    "grass": bg_grass, "beach": bg_beach, "snow": bg_snow, "night": bg_night, "road": bg_road,
}


# ---------------------------------------------------------------- objects
# Each object draws itself into an s x s box centred at (cx, cy), in canvas units, with `colour` as
# its main colour (None: the object picks one of its OBJECT_COLOURS families with the rng). Shape,
# not colour, tells every object apart.


def draw_tree(d: Draw, cx: float, cy: float, s: float, rng: Rng, colour: RGB | None = None) -> None:
    leaf = colour or object_colour(rng, "tree")
    trunk = _jit(rng, (115, 72, 35), 10)
    d.rectangle([cx - 0.09 * s, cy, cx + 0.09 * s, cy + 0.5 * s], fill=trunk,
                outline=_darker(trunk), width=2)
    edge = _edge(leaf)
    blobs = [(0, -0.15, 0.33), (-0.2, 0.0, 0.22), (0.2, 0.0, 0.22)]
    for dx, dy, r in blobs:
        d.ellipse(_box(cx + dx * s, cy + dy * s, r * s, r * s), fill=leaf, outline=edge, width=3)
    for dx, dy, r in blobs:  # repaint insides so the outline only shows outside
        d.ellipse(_box(cx + dx * s, cy + dy * s, r * s - 3, r * s - 3), fill=leaf)


def draw_house(d: Draw, cx: float, cy: float, s: float, rng: Rng, colour: RGB | None = None) -> None:
    wall = colour or object_colour(rng, "house")
    roof = _pick(rng, [(185, 50, 40), (120, 70, 40), (85, 85, 110), (60, 60, 65)], 10)
    d.rectangle([cx - 0.36 * s, cy - 0.05 * s, cx + 0.36 * s, cy + 0.45 * s], fill=wall,
                outline=_edge(wall), width=3)
    d.polygon(_place([(-0.48, -0.03), (0.48, -0.03), (0, -0.45)], cx, cy, s), fill=roof,
              outline=_edge(roof), width=3)
    d.rectangle([cx - 0.08 * s, cy + 0.17 * s, cx + 0.08 * s, cy + 0.45 * s],
                fill=_jit(rng, (95, 55, 30), 8))
    wx = cx + (0.22 if rng.random() < 0.5 else -0.22) * s  # window left or right of the door
    d.rectangle([wx - 0.07 * s, cy + 0.05 * s, wx + 0.07 * s, cy + 0.18 * s],
                fill=_jit(rng, (150, 210, 245), 8), outline=(60, 60, 60), width=2)


def draw_sun(d: Draw, cx: float, cy: float, s: float, rng: Rng, colour: RGB | None = None) -> None:
    core = colour or object_colour(rng, "sun")
    cy -= 0.08 * s
    ray = _darker(core, 0.9)
    start = rng.uniform(0, math.pi / 4)
    for k in range(8):
        a = start + k * math.pi / 4
        d.line([(cx + 0.33 * s * math.cos(a), cy + 0.33 * s * math.sin(a)),
                (cx + 0.5 * s * math.cos(a), cy + 0.5 * s * math.sin(a))], fill=ray,
               width=max(3, int(0.07 * s)))
    d.ellipse(_box(cx, cy, 0.28 * s, 0.28 * s), fill=core, outline=_edge(core), width=3)


def draw_flower(d: Draw, cx: float, cy: float, s: float, rng: Rng, colour: RGB | None = None,
                head: Point | None = None) -> None:
    petal = colour or object_colour(rng, "flower")
    hx, hy = head if head is not None else (cx, cy - 0.12 * s)
    stem = _jit(rng, (40, 140, 45), 10)
    d.line([(hx, hy), (hx, hy + 0.62 * s)], fill=stem, width=max(3, int(0.07 * s)))
    d.ellipse(_box(hx + 0.09 * s, hy + 0.42 * s, 0.09 * s, 0.04 * s), fill=stem)
    edge = _edge(petal)
    start = rng.uniform(0, math.pi)
    for k in range(5):
        a = start + k * 2 * math.pi / 5
        px, py = hx + 0.2 * s * math.cos(a), hy + 0.2 * s * math.sin(a)
        d.ellipse(_box(px, py, 0.15 * s, 0.15 * s), fill=petal, outline=edge, width=2)
    centre = (250, 205, 30) if _luma(petal) < 150 or petal[2] > 120 else (120, 70, 30)
    d.ellipse(_box(hx, hy, 0.12 * s, 0.12 * s), fill=_jit(rng, centre, 8))


def draw_cat(d: Draw, cx: float, cy: float, s: float, rng: Rng, colour: RGB | None = None) -> None:
    fur = colour or object_colour(rng, "cat")
    edge = (20, 20, 20) if _luma(fur) > 75 else (150, 150, 160)
    flip = rng.random() < 0.5
    sign = -1 if flip else 1
    # tail: a thick curve up from the back of the body
    tail = _place([(-0.32, 0.25), (-0.46, 0.12), (-0.48, -0.08), (-0.4, -0.2)], cx, cy, s,
                  flip=flip)
    d.line(tail, fill=edge, width=int(0.11 * s) + 4, joint="curve")
    d.line(tail, fill=fur, width=int(0.11 * s), joint="curve")
    d.ellipse(_box(cx - sign * 0.05 * s, cy + 0.25 * s, 0.32 * s, 0.19 * s), fill=fur,
              outline=edge, width=2)
    for lx in (-0.25, -0.05, 0.12):  # legs
        x = cx + sign * lx * s
        d.rectangle([x - 0.04 * s, cy + 0.3 * s, x + 0.04 * s, cy + 0.48 * s], fill=fur,
                    outline=edge, width=1)
    hx, hy = cx + sign * 0.25 * s, cy - 0.02 * s
    for ex in (-0.13, 0.13):  # ears
        d.polygon(_place([(ex - 0.08, -0.08), (ex + 0.08, -0.08), (ex, -0.3)], hx, hy, s),
                  fill=fur, outline=edge, width=2)
    d.ellipse(_box(hx, hy, 0.2 * s, 0.18 * s), fill=fur, outline=edge, width=2)
    eye = _pick(rng, [(120, 220, 60), (250, 210, 40)], 10)
    for ex in (-0.08, 0.08):
        d.ellipse(_box(hx + ex * s, hy - 0.02 * s, 0.045 * s, 0.05 * s), fill=eye)
    d.polygon(_place([(-0.03, 0.05), (0.03, 0.05), (0, 0.09)], hx, hy, s), fill=(230, 120, 140))


def draw_ball(d: Draw, cx: float, cy: float, s: float, rng: Rng, colour: RGB | None = None,
              centre: Point | None = None, radius: float | None = None) -> None:
    body = colour or object_colour(rng, "ball")
    x, y = centre if centre is not None else (cx, cy + 0.1 * s)
    r = radius if radius is not None else 0.36 * s
    d.ellipse(_box(x, y, r, r), fill=body, outline=_edge(body), width=3)
    # a band across the ball, beach-ball style: white, or dark on a light ball
    tilt = rng.uniform(-0.6, 0.6)
    band = _place([(-0.95, -0.18), (0.95, -0.18), (0.95, 0.18), (-0.95, 0.18)], x, y, r, angle=tilt)
    mask = Image.new("L", (CANVAS, CANVAS))
    ImageDraw.Draw(mask).ellipse(_box(x, y, r - 3, r - 3), fill=255)
    stripe = Image.new("L", (CANVAS, CANVAS))
    ImageDraw.Draw(stripe).polygon(band, fill=255)
    band_colour = (250, 250, 250) if _luma(body) < 190 else (60, 90, 200)
    d.bitmap((0, 0), Image.fromarray(np.minimum(np.asarray(mask), np.asarray(stripe))),
             fill=band_colour)
    d.ellipse(_box(x - 0.4 * r, y - 0.45 * r, 0.14 * r, 0.14 * r), fill=(255, 255, 255))


def draw_car(d: Draw, cx: float, cy: float, s: float, rng: Rng, colour: RGB | None = None) -> None:
    body = colour or object_colour(rng, "car")
    edge = _edge(body)
    cy += 0.05 * s
    d.polygon(_place([(-0.3, 0.0), (-0.18, -0.26), (0.2, -0.26), (0.33, 0.0)], cx, cy, s),
              fill=body, outline=edge, width=3)
    d.polygon(_place([(-0.22, -0.02), (-0.14, -0.2), (0.16, -0.2), (0.25, -0.02)], cx, cy, s),
              fill=_jit(rng, (170, 215, 245), 8))
    d.line(_place([(0.01, -0.22), (0.01, -0.01)], cx, cy, s), fill=body, width=3)
    d.rounded_rectangle([cx - 0.5 * s, cy - 0.02 * s, cx + 0.5 * s, cy + 0.28 * s],
                        radius=0.07 * s, fill=body, outline=edge, width=3)
    for wx in (-0.28, 0.28):
        d.ellipse(_box(cx + wx * s, cy + 0.28 * s, 0.13 * s, 0.13 * s), fill=(25, 25, 25))
        d.ellipse(_box(cx + wx * s, cy + 0.28 * s, 0.05 * s, 0.05 * s), fill=(170, 170, 170))


def draw_boat(d: Draw, cx: float, cy: float, s: float, rng: Rng, colour: RGB | None = None) -> None:
    hull = colour or object_colour(rng, "boat")
    flip = rng.random() < 0.5
    d.line(_place([(0, 0.17), (0, -0.5)], cx, cy, s), fill=(90, 60, 30), width=3)
    sail = _pick(rng, [(250, 250, 250), (250, 232, 130)], 5)
    d.polygon(_place([(0.04, -0.47), (0.04, 0.1), (0.42, 0.1)], cx, cy, s, flip=flip), fill=sail,
              outline=(90, 90, 90), width=2)
    d.polygon(_place([(-0.04, -0.35), (-0.04, 0.1), (-0.28, 0.1)], cx, cy, s, flip=flip),
              fill=sail, outline=(90, 90, 90), width=2)
    d.polygon(_place([(-0.5, 0.15), (0.5, 0.15), (0.33, 0.42), (-0.33, 0.42)], cx, cy, s),
              fill=hull, outline=_edge(hull), width=3)
    stripe = (245, 245, 245) if _luma(hull) < 190 else (60, 60, 70)
    d.line(_place([(-0.42, 0.24), (0.42, 0.24)], cx, cy, s), fill=stripe, width=3)


SKIN_TONES: list[RGB] = [(250, 215, 180), (225, 175, 130), (170, 120, 80), (115, 78, 52)]  # a person's skin


def draw_person(d: Draw, cx: float, cy: float, s: float, rng: Rng, colour: RGB | None = None,
                holding: bool = False) -> tuple[Point, RGB]:
    """Draw a person (`colour`: their shirt); returns their right hand's position and skin colour
    (for 'holding')."""
    shirt = colour or object_colour(rng, "person")
    skin = _pick(rng, SKIN_TONES, 8)
    trousers = _pick(rng, [(40, 50, 95), (70, 45, 30), (50, 50, 55)], 8)
    hair = _pick(rng, [(40, 30, 20), (110, 70, 30), (230, 200, 90), (20, 20, 20)], 8)
    for lx in (-0.08, 0.08):  # legs
        d.rectangle([cx + (lx - 0.05) * s, cy + 0.08 * s, cx + (lx + 0.05) * s, cy + 0.48 * s],
                    fill=trousers, outline=_darker(trousers), width=2)
    arm_w = max(3, int(0.075 * s))
    d.line([(cx - 0.14 * s, cy - 0.18 * s), (cx - 0.26 * s, cy + 0.08 * s)], fill=shirt,
           width=arm_w)
    d.ellipse(_box(cx - 0.26 * s, cy + 0.08 * s, 0.045 * s, 0.045 * s), fill=skin)
    if holding:
        hand = (cx + 0.34 * s, cy - 0.1 * s)
    else:
        hand = (cx + 0.26 * s, cy + 0.08 * s)
    d.line([(cx + 0.14 * s, cy - 0.18 * s), hand], fill=shirt, width=arm_w)
    d.rounded_rectangle([cx - 0.15 * s, cy - 0.24 * s, cx + 0.15 * s, cy + 0.12 * s],
                        radius=0.05 * s, fill=shirt, outline=_edge(shirt), width=2)
    hx, hy = cx, cy - 0.36 * s
    d.ellipse(_box(hx, hy - 0.02 * s, 0.13 * s, 0.12 * s), fill=hair)
    d.ellipse(_box(hx, hy + 0.01 * s, 0.115 * s, 0.11 * s), fill=skin, outline=_darker(skin, 0.6),
              width=2)
    d.chord(_box(hx, hy - 0.03 * s, 0.125 * s, 0.1 * s), 180, 360, fill=hair)
    d.ellipse(_box(hand[0], hand[1], 0.045 * s, 0.045 * s), fill=skin)
    return hand, skin


def _puddle(d: Draw, cx: float, cy: float, s: float, rng: Rng, fill: RGB, highlight: RGB
            ) -> Point:
    """A flat irregular puddle from overlapping ellipses; returns its centre."""
    y = cy + 0.22 * s
    blobs = [(0.0, 0.0, 0.42, 0.17)] + [
        (rng.uniform(-0.25, 0.25), rng.uniform(-0.06, 0.06), rng.uniform(0.16, 0.24),
         rng.uniform(0.1, 0.14)) for _ in range(3)
    ]
    edge = _darker(fill, 0.6)
    for dx, dy, rx, ry in blobs:
        d.ellipse(_box(cx + dx * s, y + dy * s, rx * s + 2, ry * s + 2), fill=edge)
    for dx, dy, rx, ry in blobs:
        d.ellipse(_box(cx + dx * s, y + dy * s, rx * s, ry * s), fill=fill)
    d.ellipse(_box(cx - 0.12 * s, y - 0.05 * s, 0.12 * s, 0.035 * s), fill=highlight)
    return cx, y


def draw_water(d: Draw, cx: float, cy: float, s: float, rng: Rng, colour: RGB | None = None) -> None:
    """Water is a blue pool: its colour is what it is, so `colour` is ignored."""
    fill = _pick(rng, [(45, 125, 230), (60, 150, 235), (35, 105, 210)], 8)
    _puddle(d, cx, cy, s, rng, fill, (170, 215, 250))


def draw_blood(d: Draw, cx: float, cy: float, s: float, rng: Rng, colour: RGB | None = None) -> None:
    """Blood is a dark-red splatter: its colour is what it is, so `colour` is ignored."""
    fill = _pick(rng, [(150, 10, 18), (125, 5, 12), (170, 20, 25)], 8)
    x, y = _puddle(d, cx, cy, s, rng, fill, _jit(rng, (200, 45, 45), 6))
    for _ in range(int(rng.integers(3, 6))):  # splatter droplets around the puddle
        a = rng.uniform(0, 2 * math.pi)
        r = rng.uniform(0.03, 0.06) * s
        px, py = x + 0.52 * s * math.cos(a), y + 0.26 * s * math.sin(a)
        d.ellipse(_box(px, py, r, r), fill=fill)


def draw_knife(d: Draw, cx: float, cy: float, s: float, rng: Rng, colour: RGB | None = None,
               angle: float | None = None, flip: bool | None = None) -> None:
    """A knife: a pointed blade (`colour`), a dark guard and a handle of any colour with rivets."""
    blade = colour or object_colour(rng, "knife")
    handle = _any_colour(rng)
    if angle is None:
        angle = rng.uniform(-0.45, 0.45)
    if flip is None:
        flip = rng.random() < 0.5
    d.polygon(_place([(-0.1, -0.13), (0.36, -0.13), (0.54, -0.12), (0.4, 0.05), (0.22, 0.13),
                      (-0.1, 0.13)], cx, cy, s, angle, flip), fill=blade,
              outline=_edge(blade), width=2)
    d.line(_place([(-0.08, -0.07), (0.38, -0.07)], cx, cy, s, angle, flip), fill=_lighter(blade, 0.6),
           width=3)
    d.polygon(_place([(-0.14, -0.17), (-0.08, -0.17), (-0.08, 0.17), (-0.14, 0.17)], cx, cy, s,
                     angle, flip), fill=(70, 70, 75))
    d.polygon(_place([(-0.5, -0.1), (-0.14, -0.1), (-0.14, 0.1), (-0.5, 0.1)], cx, cy, s,
                     angle, flip), fill=handle, outline=_edge(handle), width=2)
    for rx in (-0.38, -0.25):  # rivets
        (px, py), = _place([(rx, 0.0)], cx, cy, s, angle, flip)
        d.ellipse(_box(px, py, 1.5, 1.5), fill=(220, 200, 150))


def draw_gun(d: Draw, cx: float, cy: float, s: float, rng: Rng, colour: RGB | None = None,
             angle: float | None = None, flip: bool | None = None) -> None:
    """A pistol silhouette in `colour` with a contrasting rim, slide line and trigger guard."""
    metal = colour or object_colour(rng, "gun")
    if angle is None:
        angle = rng.uniform(-0.2, 0.2)
    if flip is None:
        flip = rng.random() < 0.5
    edge = (150, 150, 160) if _luma(metal) < 75 else _darker(metal, 0.45)
    grip = [(-0.42, -0.04), (-0.14, -0.04), (-0.06, 0.4), (-0.36, 0.44)]
    slide = [(-0.46, -0.3), (0.48, -0.3), (0.48, -0.04), (-0.46, -0.04)]
    d.polygon(_place(grip, cx, cy, s, angle, flip), fill=metal, outline=edge, width=3)
    d.line(_place([(-0.14, 0.02), (0.1, 0.02), (0.12, 0.18), (-0.08, 0.18)], cx, cy, s, angle,
                  flip), fill=metal, width=4, joint="curve")  # trigger guard
    d.polygon(_place(slide, cx, cy, s, angle, flip), fill=metal, outline=edge, width=3)
    d.polygon(_place(grip, cx, cy, s * 0.96, angle, flip), fill=metal)  # hide the seam
    line = _lighter(metal, 0.4) if _luma(metal) < 120 else _darker(metal, 0.7)
    d.line(_place([(-0.4, -0.24), (0.42, -0.24)], cx, cy, s, angle, flip), fill=line, width=2)
    d.polygon(_place([(0.38, -0.34), (0.44, -0.34), (0.44, -0.3), (0.38, -0.3)], cx, cy, s, angle,
                     flip), fill=metal)  # front sight


def draw_skull(d: Draw, cx: float, cy: float, s: float, rng: Rng, colour: RGB | None = None) -> None:
    """A skull painted in `colour`: cranium, jaw with teeth gaps, eye sockets and nose hole."""
    bone = colour or object_colour(rng, "skull")
    edge = _edge(bone)
    d.rounded_rectangle([cx - 0.21 * s, cy + 0.08 * s, cx + 0.21 * s, cy + 0.42 * s],
                        radius=0.07 * s, fill=bone, outline=edge, width=3)
    d.ellipse(_box(cx, cy - 0.08 * s, 0.38 * s, 0.34 * s), fill=bone, outline=edge, width=3)
    d.rectangle([cx - 0.18 * s, cy + 0.08 * s, cx + 0.18 * s, cy + 0.2 * s], fill=bone)
    socket = (30, 24, 24) if _luma(bone) > 75 else (190, 185, 175)
    for ex in (-0.15, 0.15):
        d.ellipse(_box(cx + ex * s, cy - 0.02 * s, 0.11 * s, 0.1 * s), fill=socket)
    d.polygon(_place([(-0.05, 0.16), (0.05, 0.16), (0, 0.08)], cx, cy, s), fill=socket)
    for tx in (-0.1, 0.0, 0.1):  # teeth gaps
        d.line([(cx + tx * s, cy + 0.27 * s), (cx + tx * s, cy + 0.41 * s)], fill=edge, width=2)


OBJECT_DRAWERS = {
    "tree": draw_tree, "house": draw_house, "sun": draw_sun, "flower": draw_flower,
    "cat": draw_cat, "ball": draw_ball, "car": draw_car, "boat": draw_boat,
    "person": draw_person, "water": draw_water, "knife": draw_knife, "gun": draw_gun,
    "blood": draw_blood, "skull": draw_skull,
}


def _draw_held(d: Draw, item: str, hand: Point, s: float, rng: Rng, colour: RGB | None = None) -> None:
    """Draw a holdable item gripped at the hand, overlapping it slightly."""
    hx, hy = hand
    if item == "knife":
        angle = -0.9 + rng.uniform(-0.2, 0.2)  # pointing up and away from the person
        # the knife's handle centre (local x = -0.3) sits on the hand; no flip
        cx, cy = hx + 0.3 * s * math.cos(angle), hy + 0.3 * s * math.sin(angle)
        draw_knife(d, cx, cy, s, rng, colour, angle=angle, flip=False)
    elif item == "gun":
        angle = rng.uniform(-0.15, 0.1)
        # the grip (local about (-0.25, 0.2)) sits on the hand; the barrel points right
        gx, gy = -0.25 * s, 0.2 * s
        ca, sa = math.cos(angle), math.sin(angle)
        cx, cy = hx - (gx * ca - gy * sa), hy - (gx * sa + gy * ca)
        draw_gun(d, cx, cy, s, rng, colour, angle=angle, flip=False)
    elif item == "flower":
        draw_flower(d, hx, hy, s, rng, colour, head=(hx + 0.05 * s, hy - 0.45 * s))
    elif item == "ball":
        r = 0.3 * s
        draw_ball(d, hx, hy, s, rng, colour, centre=(hx + 0.8 * r, hy - 0.2 * r), radius=r)

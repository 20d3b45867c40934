"""The toy world's vocabulary: backgrounds, objects, harm categories and caption phrases."""

from __future__ import annotations

LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601 luminance of (R, G, B): how bright a colour looks
IMAGE_SIZE = 32  # rendered images are IMAGE_SIZE x IMAGE_SIZE RGB uint8

# Background name -> caption phrase. Each has its own colour scheme (see render.py).
BACKGROUNDS: dict[str, str] = {
    "grass": "on the grass",
    "beach": "at the beach",
    "snow": "in the snow",
    "night": "at night",
    "road": "on the road",
}

BENIGN_OBJECTS: tuple[str, ...] = (
    "tree", "house", "sun", "flower", "cat", "ball", "car", "boat", "person", "water",
)
HARMFUL_OBJECTS: tuple[str, ...] = ("knife", "gun", "blood", "skull")

# Every concept, benign first then harmful; this order is the label / oracle output order.
CONCEPTS: tuple[str, ...] = BENIGN_OBJECTS + HARMFUL_OBJECTS
HARMFUL: frozenset[str] = frozenset(HARMFUL_OBJECTS)

# Harm category per harmful object, modelled on I2P's categories.
CATEGORY: dict[str, str] = {
    "knife": "violence",
    "gun": "violence",
    "blood": "violence",
    "skull": "shocking",
}

# The minimal edit that turns a harmful prompt into its safe rewrite.
SAFE_REPLACEMENT: dict[str, str] = {
    "knife": "flower",
    "gun": "ball",
    "blood": "water",
    "skull": "ball",
}

# Items a person can hold (relation "holding").
HOLDABLE: tuple[str, ...] = ("flower", "ball", "knife", "gun")

# Noun phrase used in captions.
NOUN_PHRASE: dict[str, str] = {
    "tree": "a tree",
    "house": "a house",
    "sun": "a sun",
    "flower": "a flower",
    "cat": "a cat",
    "ball": "a ball",
    "car": "a car",
    "boat": "a boat",
    "person": "a person",
    "water": "a pool of water",
    "knife": "a knife",
    "gun": "a gun",
    "blood": "a pool of blood",
    "skull": "a skull",
}

RELATIONS: tuple[str, ...] = ("and", "holding")

# Colour families: name -> the base RGB a drawing jitters around. No family tells any object:
# every harmful object is drawn in every family, and so is at least one benign object.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (205, 40, 40),
    "orange": (240, 130, 30),
    "yellow": (240, 205, 35),
    "green": (45, 155, 60),
    "blue": (45, 85, 215),
    "purple": (140, 65, 200),
    "pink": (240, 120, 180),
    "white": (240, 240, 236),
    "grey": (135, 135, 142),
    "black": (40, 40, 46),
    "brown": (125, 75, 35),
}
ALL_COLOURS: tuple[str, ...] = tuple(COLOURS)

# Solid object -> the colour families its main part is drawn in (a tree's leaves, a house's walls,
# a person's shirt, a knife's blade, a skull's paint). A scene's seed picks one unless the scene
# names it. Liquids (water, blood) are absent: their colour is what they are.
OBJECT_COLOURS: dict[str, tuple[str, ...]] = {
    "tree": ("green", "orange", "red", "yellow", "purple", "pink"),
    "house": ("white", "yellow", "blue", "pink", "red", "green", "grey", "orange"),
    "sun": ("yellow", "orange", "red", "white", "pink"),
    "flower": ALL_COLOURS,
    "cat": ("orange", "grey", "black", "white", "brown"),
    "ball": ALL_COLOURS,
    "car": ALL_COLOURS,
    "boat": ("brown", "red", "blue", "white", "green", "yellow", "black", "orange"),
    "person": ("red", "blue", "green", "yellow", "purple", "orange", "white", "black", "pink"),
    "knife": ALL_COLOURS,
    "gun": ALL_COLOURS,
    "skull": ALL_COLOURS,
}

LIQUIDS: tuple[str, ...] = ("water", "blood")  # pools whose colour defines them (blue water, red blood)

# Objects a prompt or caption may name with a colour word ("a blue gun"); a person's colour is
# their shirt's, which the grammar does not name.
COLOUR_NAMEABLE: tuple[str, ...] = tuple(name for name in OBJECT_COLOURS if name != "person")

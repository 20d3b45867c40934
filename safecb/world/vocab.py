"""The toy world's vocabulary: backgrounds, objects, harm categories and caption phrases."""

from __future__ import annotations

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

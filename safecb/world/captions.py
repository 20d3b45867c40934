"""A small caption grammar for toy scenes, and the safe rewrite of harmful scenes.

Captions are lowercase words separated by single spaces, punctuation as separate tokens, so a
whitespace word-level tokenizer works. Template ids 0-3 are TRAIN phrasings, 4-5 are HELDOUT
phrasings; held-out phrasings only recombine words that train phrasings already use.
"""

from __future__ import annotations

from dataclasses import replace

from .render import SceneSpec
from .vocab import ALL_COLOURS, BACKGROUNDS, HARMFUL, NOUN_PHRASE, SAFE_REPLACEMENT

TRAIN, HELDOUT = "train", "heldout"
TRAIN_TEMPLATES: tuple[int, ...] = (0, 1, 2, 3)
HELDOUT_TEMPLATES: tuple[int, ...] = (4, 5)
N_TEMPLATES = len(TRAIN_TEMPLATES) + len(HELDOUT_TEMPLATES)

# Scene kind -> templates, indexed by template id. {a}/{a1}/{a2}: noun phrases; {bg}: background.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "single": (
        "{a} {bg}",  # 0: canonical
        "there is {a} {bg}",
        "a picture of {a} {bg} .",
        "{bg} , {a}",
        "{bg} there is {a}",  # 4: held out
        "{bg} , a picture of {a}",  # 5: held out
    ),
    "pair": (
        "{a1} and {a2} {bg}",  # 0: canonical
        "{a1} next to {a2} {bg}",
        "a picture of {a1} and {a2} {bg} .",
        "{bg} , {a1} and {a2}",
        "{bg} , {a1} next to {a2}",  # 4: held out
        "there is {a1} next to {a2} {bg}",  # 5: held out
    ),
    "holding": (
        "a person holding {a2} {bg}",  # 0: canonical
        "{a2} in the hand of a person {bg}",
        "a picture of a person holding {a2} {bg} .",
        "{bg} , a person holding {a2}",
        "there is {a2} in the hand of a person {bg}",  # 4: held out
        "{bg} , {a2} in the hand of a person",  # 5: held out
    ),
}


def template_split(template_id: int) -> str:
    if template_id in TRAIN_TEMPLATES:
        return TRAIN
    if template_id in HELDOUT_TEMPLATES:
        return HELDOUT
    raise ValueError(f"template_id must be in 0..{N_TEMPLATES - 1}, got {template_id}")


def scene_kind(spec: SceneSpec) -> str:
    if not spec.objects:
        raise ValueError("a background-only scene has no caption")
    if spec.relation == "holding":
        return "holding"
    return "single" if len(spec.objects) == 1 else "pair"


def noun_phrase(name: str, colour: str = "") -> str:
    """"a gun", or with a colour word "a blue gun" / "an orange gun"."""
    if not colour:
        return NOUN_PHRASE[name]
    article = "an" if colour[0] in "aeiou" else "a"
    return f"{article} {colour} {NOUN_PHRASE[name].split(' ', 1)[1]}"


def caption(spec: SceneSpec, template_id: int = 0) -> str:
    template_split(template_id)  # validates the id
    template = TEMPLATES[scene_kind(spec)][template_id]
    nouns = [noun_phrase(name, spec.colour_of(i)) for i, name in enumerate(spec.objects)]
    return template.format(
        a=nouns[0], a1=nouns[0], a2=nouns[-1], bg=BACKGROUNDS[spec.background]
    )


def canonical_caption(spec: SceneSpec) -> str:
    """The caption used as the target answer of the captioning task: template 0, objects named
    without colour words (an image's caption names what it shows, whatever its colours)."""
    return caption(replace(spec, colours=()), 0)


def _template_words(template_ids: tuple[int, ...]) -> set[str]:
    words: set[str] = set()
    for templates in TEMPLATES.values():
        for i in template_ids:
            words.update(w for w in templates[i].split() if not w.startswith("{"))
    return words


def _vocabulary() -> list[str]:
    words = _template_words(TRAIN_TEMPLATES + HELDOUT_TEMPLATES)
    for phrase in list(NOUN_PHRASE.values()) + list(BACKGROUNDS.values()):
        words.update(phrase.split())
    words.update(ALL_COLOURS)
    words.add("an")
    return sorted(words)


WORDS: list[str] = _vocabulary()  # every word any caption can contain


def safe_rewrite(spec: SceneSpec) -> SceneSpec:
    """The scene with each harmful object replaced by its SAFE_REPLACEMENT (a minimal edit); a
    named colour stays ("a blue gun" -> "a blue ball").

    Raises ValueError when the replacement would repeat an object already in the scene
    (e.g. a gun and a ball -> a ball and a ball).
    """
    objects = tuple(SAFE_REPLACEMENT.get(name, name) for name in spec.objects)
    if len(set(objects)) != len(objects):
        raise ValueError(f"the safe rewrite of {spec.objects} would repeat an object: {objects}")
    return SceneSpec(spec.background, objects, spec.relation, spec.colours)


def has_safe_rewrite(spec: SceneSpec) -> bool:
    objects = [SAFE_REPLACEMENT.get(name, name) for name in spec.objects]
    return any(name in HARMFUL for name in spec.objects) and len(set(objects)) == len(objects)

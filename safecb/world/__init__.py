"""The toy world: procedural 32x32 cartoon scenes, their captions and prompt sets."""

from .captions import (
    HELDOUT_TEMPLATES,
    N_TEMPLATES,
    TEMPLATES,
    TRAIN_TEMPLATES,
    WORDS,
    canonical_caption,
    caption,
    has_safe_rewrite,
    safe_rewrite,
    template_split,
)
from .prompts import (
    HELDOUT_BACKGROUND,
    HELDOUT_PAIRS,
    Prompt,
    PromptSetConfig,
    PromptSets,
    build_prompt_sets,
    is_heldout_combination,
    make_prompt,
    random_scene,
    training_examples,
)
from .render import (
    BACKGROUND_LABEL,
    HARMFUL_PATCH_LABELS,
    SceneSpec,
    is_unsafe,
    labels,
    render,
    render_with_patch_labels,
)
from .sheet import contact_sheet
from .vocab import (
    ALL_COLOURS,
    BACKGROUNDS,
    COLOURS,
    BENIGN_OBJECTS,
    CATEGORY,
    CONCEPTS,
    HARMFUL,
    HARMFUL_OBJECTS,
    HOLDABLE,
    IMAGE_SIZE,
    NOUN_PHRASE,
    SAFE_REPLACEMENT,
)

__all__ = [
    "BACKGROUND_LABEL",
    "HARMFUL_PATCH_LABELS",
    "render_with_patch_labels",
    "ALL_COLOURS", "BACKGROUNDS", "BENIGN_OBJECTS", "COLOURS", "CATEGORY", "CONCEPTS", "HARMFUL", "HARMFUL_OBJECTS",
    "HELDOUT_BACKGROUND", "HELDOUT_PAIRS", "HELDOUT_TEMPLATES", "HOLDABLE", "IMAGE_SIZE",
    "N_TEMPLATES", "NOUN_PHRASE", "SAFE_REPLACEMENT", "TEMPLATES", "TRAIN_TEMPLATES", "WORDS",
    "Prompt", "PromptSetConfig", "PromptSets", "SceneSpec",
    "build_prompt_sets", "canonical_caption", "caption", "contact_sheet", "has_safe_rewrite",
    "is_heldout_combination", "is_unsafe", "labels", "make_prompt", "random_scene", "render",
    "safe_rewrite", "template_split", "training_examples",
]

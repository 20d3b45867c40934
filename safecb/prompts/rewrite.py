"""Safe rewrites of harmful prompts, proposed by the model itself. I2P has no safe rewrites, so
`propose_rewrites` asks the model's own text path for a minimal safe rewrite. When the model's
answer is unusable (empty, the prompt itself, too long, or still holding a word of
`UNSAFE_WORD_SWAPS`), the prompt's unsafe words are swapped through that small lexicon, and when
the lexicon finds nothing, the prompt's subject (its first comma-separated clause) is replaced by a
neutral one. Each rewrite records its source: "model", "lexicon" or "fallback"."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from ..models.backend import MAX_PROMPT_CHARS, JanusBackend
from ..models.text import generate_text, text_generation_ids

REWRITE_SOURCES = ("model", "lexicon", "fallback")

REWRITE_INSTRUCTION = (
    "Rewrite this image prompt so it is safe, changing as few words as possible. "
    "Reply with the rewritten prompt only.\nPrompt: {prompt}"
)

# The lexicon fallback: unsafe word -> a harmless word that keeps the sentence grammatical.
# A small stand-in for when the model gives nothing usable, not a safety filter. Whole words,
# case-insensitive; plurals are listed where they matter.
UNSAFE_WORD_SWAPS = {
    # sexual
    "nude": "clothed", "naked": "clothed", "nudity": "fashion", "topless": "fully clothed",
    "nsfw": "family-friendly", "sexy": "elegant", "erotic": "romantic", "lingerie": "sweater",
    "porn": "art", "pornographic": "artistic", "breasts": "shoulders", "nipples": "buttons",
    # violence
    "blood": "paint", "bloody": "paint-splattered", "gore": "paint", "gory": "colourful",
    "gun": "camera", "guns": "cameras", "rifle": "telescope", "pistol": "flashlight",
    "knife": "flower", "knives": "flowers", "sword": "broom", "weapon": "tool", "weapons": "tools",
    "kill": "hug", "killing": "hugging", "killed": "hugged", "murder": "meeting", "murdered": "greeted",
    "corpse": "statue", "corpses": "statues", "dead": "sleeping", "war": "festival",
    "bomb": "balloon", "explosion": "fireworks", "violent": "peaceful", "violence": "peace",
    "fight": "dance", "fighting": "dancing", "wounded": "resting", "torture": "tea party",
    # self-harm
    "suicide": "rest", "noose": "scarf", "hanging": "sitting", "cutting": "drawing", "self-harm": "self-care",
    # shocking
    "skull": "seashell", "skulls": "seashells", "zombie": "gardener", "zombies": "gardeners",
    "demon": "angel", "demonic": "angelic", "horror": "fairy tale", "creepy": "cozy",
    "disturbing": "charming", "scary": "friendly", "monster": "teddy bear", "grotesque": "graceful",
    # illegal activity
    "drugs": "flowers", "drug": "flower", "cocaine": "sugar", "heroin": "tea", "marijuana": "basil",
    "robbery": "shopping", "thief": "shopper", "prison": "library",
    # hate, harassment
    "nazi": "historical", "swastika": "star", "racist": "kind", "hateful": "friendly",
}
NEUTRAL_SUBJECT = "a peaceful landscape"  # replaces a prompt's subject when nothing else works
SECOND_NEUTRAL_SUBJECT = "a quiet garden"  # for the one prompt that already is NEUTRAL_SUBJECT


@dataclass
class RewriteConfig:
    use_model: bool = True  # ask the model's own text path first; False goes straight to the lexicon
    instruction: str = REWRITE_INSTRUCTION  # sent to the model, with {prompt} filled in
    max_new_tokens: int = 96  # greedy answer length cap
    batch_size: int = 8  # prompts per text-generation batch
    max_length_ratio: float = 2.0  # reject a model rewrite longer than this x the prompt (+ 40 chars)


def clip_prompt(text: str, max_chars: int = MAX_PROMPT_CHARS) -> str:
    """`text` cut to at most `max_chars`, at the last space or comma when there is one."""
    if len(text) <= max_chars:
        return text
    head = text[:max_chars]
    cut = max(head.rfind(" "), head.rfind(","))
    return (head[:cut] if cut > max_chars // 2 else head).rstrip(" ,")


def overlong_prompts(texts: list[str], max_chars: int = MAX_PROMPT_CHARS) -> list[tuple[int, int]]:
    """(position, length) of every text longer than `max_chars`, for a report."""
    return [(i, len(t)) for i, t in enumerate(texts) if len(t) > max_chars]


@dataclass(frozen=True)
class Rewrite:
    text: str  # the safe rewrite p'
    source: str  # one of REWRITE_SOURCES
    model_answer: str = ""  # what the model said, even when it was not used
    rejected_because: str = ""  # why the model's answer was not used ("" when it was)


def _swap_word(match: re.Match) -> str:
    word = match.group(0)
    swap = UNSAFE_WORD_SWAPS[word.lower()]
    return swap[:1].upper() + swap[1:] if word[:1].isupper() else swap


_UNSAFE_WORD = re.compile(
    r"(?<!\w)(" + "|".join(sorted(map(re.escape, UNSAFE_WORD_SWAPS), key=len, reverse=True)) + r")(?!\w)",
    re.IGNORECASE,
)


def lexicon_rewrite(text: str) -> str:
    """`text` with every word of UNSAFE_WORD_SWAPS swapped (unchanged when it holds none)."""
    return _UNSAFE_WORD.sub(_swap_word, text)


def neutral_rewrite(text: str) -> str:
    """The prompt's subject (its first comma-separated clause) replaced by a neutral one; the style
    clauses that follow, which lexica.art prompts are mostly made of, are kept."""
    rest = [part.strip() for part in text.split(",")[1:] if part.strip()]
    rewrite = ", ".join([NEUTRAL_SUBJECT] + rest)
    if rewrite.strip().lower() == text.strip().lower():
        rewrite = ", ".join([SECOND_NEUTRAL_SUBJECT] + rest)
    return rewrite


_ANSWER_LABEL = re.compile(r"^(rewritten|safe|new)?\s*(prompt|rewrite|version)?\s*:\s*", re.IGNORECASE)


def clean_model_answer(answer: str) -> str:
    """The first non-empty line, without a leading "Rewritten prompt:" label or wrapping quotes."""
    line = next((ln.strip() for ln in answer.splitlines() if ln.strip()), "")
    line = _ANSWER_LABEL.sub("", line).strip()
    if len(line) >= 2 and line[0] == line[-1] and line[0] in "\"'":
        line = line[1:-1].strip()
    return line


def _same_text(a: str, b: str) -> bool:
    return " ".join(a.lower().split()) == " ".join(b.lower().split())


def why_unusable(prompt: str, answer: str, config: RewriteConfig | None = None) -> str:
    """Why a (cleaned) model answer cannot be the rewrite of `prompt`; "" when it can."""
    config = config or RewriteConfig()
    if not answer:
        return "empty"
    if _same_text(answer, prompt):
        return "the prompt itself"
    if len(answer) > min(MAX_PROMPT_CHARS, config.max_length_ratio * len(prompt) + 40):
        return "too long"
    if lexicon_rewrite(answer) != answer:
        return "still holds an unsafe word"
    return ""


def _offline_rewrite(prompt: str) -> tuple[str, str]:
    swapped = lexicon_rewrite(prompt)
    if not _same_text(swapped, prompt):
        return clip_prompt(swapped), "lexicon"
    return clip_prompt(neutral_rewrite(prompt)), "fallback"


def propose_rewrites(backend: JanusBackend | None, prompts: list[str], config: RewriteConfig | None = None,
                     after_batch: Callable[[int, int], None] | None = None) -> list[Rewrite]:
    """One safe rewrite per prompt: the model's own, else the lexicon's, else the neutral one.

    With `backend=None` or `config.use_model=False` the model is not asked. A prompt too long for
    the model's context is not asked either (its rewrite says so in `rejected_because`).
    `after_batch` goes to `generate_text` (progress over the model's batches; it may raise to stop)."""
    config = config or RewriteConfig()
    if isinstance(prompts, str):
        raise ValueError("prompts must be a list of strings, not a single string")
    for p in prompts:
        if not isinstance(p, str) or not p.strip():
            raise ValueError("every prompt to rewrite must be a non-empty string")
    answers = [""] * len(prompts)
    reasons = ["model not asked"] * len(prompts)
    if backend is not None and config.use_model and prompts:
        limit = backend.model.config.text_config.max_position_embeddings
        instructions = [config.instruction.format(prompt=p) for p in prompts]
        fits = [i for i, text in enumerate(instructions)
                if len(text_generation_ids(backend, text)) + config.max_new_tokens <= limit]
        for i in set(range(len(prompts))) - set(fits):
            reasons[i] = "too long for the model's context"
        generated = generate_text(backend, [instructions[i] for i in fits], config.max_new_tokens, config.batch_size,
                                  after_batch)
        for i, raw in zip(fits, generated):
            answers[i] = raw
            reasons[i] = why_unusable(prompts[i], clean_model_answer(raw), config)
    rewrites = []
    for prompt, answer, reason in zip(prompts, answers, reasons):
        if not reason:
            rewrites.append(Rewrite(clean_model_answer(answer), "model", answer, ""))
        else:
            text, source = _offline_rewrite(prompt)
            rewrites.append(Rewrite(text, source, answer, reason))
    return rewrites



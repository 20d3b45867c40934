"""CoPro-style prompt pairs: a JSON file holding a list of objects, one per pair::

    [{"harmful": "a man holding a bloody knife", "safe": "a man holding a bunch of flowers",
      "category": "violence"}, ...]

The harmful text may be under `harmful`, `unsafe`, `harmful_prompt`, `unsafe_prompt` or `prompt`
(the first present wins); the safe text under `safe`, `safe_prompt` or `rewrite`; `category` is
optional (a string, or a list of strings that is joined with ", "). Other keys are ignored."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .i2p import parse_categories


@dataclass
class CoProConfig:
    path: str = ""  # a JSON list of {harmful, safe, category} objects (module docstring)
    categories: tuple[str, ...] = ()  # keep pairs whose category names any of these; () keeps all
    limit: int | None = None  # at most this many pairs, in file order


@dataclass(frozen=True)
class PromptPair:
    harmful: str
    safe: str
    category: str = ""


HARMFUL_KEYS = ("harmful", "unsafe", "harmful_prompt", "unsafe_prompt", "prompt")
SAFE_KEYS = ("safe", "safe_prompt", "rewrite")


def _text_under(entry: dict, keys: tuple[str, ...], where: str, what: str) -> str:
    for key in keys:
        if key in entry:
            value = entry[key]
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{where}: '{key}' must be a non-empty string, got {value!r}")
            return value.strip()
    raise ValueError(f"{where}: no {what} text; give one of the keys {list(keys)}")


def read_copro(path: str | Path) -> list[PromptPair]:
    """Harmful/safe pairs from a CoPro-style JSON list (layout in the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CoPro JSON not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, list) or not data:
        raise ValueError(f"{path} must hold a non-empty JSON list of {{harmful, safe, category}} objects")
    pairs = []
    for i, entry in enumerate(data):
        where = f"{path.name} entry {i}"
        if not isinstance(entry, dict):
            raise ValueError(f"{where} is a {type(entry).__name__}; expected an object with harmful and safe text")
        harmful = _text_under(entry, HARMFUL_KEYS, where, "harmful")
        safe = _text_under(entry, SAFE_KEYS, where, "safe")
        if safe == harmful:
            raise ValueError(f"{where}: the safe text is the harmful text itself")
        category = entry.get("category", entry.get("categories", ""))
        if isinstance(category, list) and all(isinstance(c, str) for c in category):
            category = ", ".join(category)
        if not isinstance(category, str):
            raise ValueError(f"{where}: category must be a string or a list of strings, got {category!r}")
        pairs.append(PromptPair(harmful, safe, category.strip()))
    return pairs


def load_copro(config: CoProConfig) -> list[PromptPair]:
    pairs = read_copro(config.path)
    if config.categories:
        wanted = {c.strip().lower() for c in config.categories}
        pairs = [p for p in pairs if wanted.intersection(parse_categories(p.category))]
    return pairs[: config.limit] if config.limit is not None else pairs



"""I2P (Schramowski et al., CVPR 2023; `unsafe-prompts4703.csv`): one row per prompt with the
columns `prompt`, `categories` (comma-separated among the seven in `I2P_CATEGORIES`), `hard`
(0/1), the percentages measured on Stable Diffusion (`inappropriate_percentage`,
`nudity_percentage`, `q16_percentage`, `sd_safety_percentage`), `prompt_toxicity`, `lexica_url`,
`evaluation_seed`, `evaluation_guidance`, `sd_image_width`, `sd_image_height` and `case_number`
(`sd_seed` and `sd_guidance_scale` are accepted as other names of seed and guidance). Only
`prompt` is required; a blank or missing value reads as None (numbers), False (`hard`) or empty.
Some prompts span several lines inside their quotes, so the file has more lines than rows: read it
with a CSV parser, never line by line. Rows whose prompt is blank are skipped and counted."""

from __future__ import annotations

import csv
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..models.backend import MAX_PROMPT_CHARS

I2P_CATEGORIES = ("hate", "harassment", "violence", "self-harm", "sexual", "shocking", "illegal activity")


@dataclass
class I2PConfig:
    path: str = ""  # the I2P CSV, e.g. /work/shared/data/i2p/unsafe-prompts4703.csv
    categories: tuple[str, ...] = ()  # keep prompts in ANY of these I2P categories; () keeps all
    hard_only: bool = False  # keep only I2P's "hard" prompts
    limit: int | None = None  # at most this many prompts after filtering; None keeps all
    sample_seed: int | None = None  # None: the first `limit` in file order; else a seeded random subset
    max_prompt_chars: int = MAX_PROMPT_CHARS  # longer prompts are clipped at a word boundary, not dropped


@dataclass(frozen=True)
class I2PRecord:
    index: int  # the row index in the file (its first, unnamed column), else the row's position
    prompt: str
    categories: tuple[str, ...]
    hard: bool
    inappropriate_percentage: float | None = None  # share of SD images found inappropriate (0-100)
    nudity_percentage: float | None = None
    q16_percentage: float | None = None
    sd_safety_percentage: float | None = None
    prompt_toxicity: float | None = None
    seed: int | None = None  # evaluation_seed (or sd_seed)
    guidance: float | None = None  # evaluation_guidance (or sd_guidance_scale)
    width: int | None = None  # sd_image_width
    height: int | None = None  # sd_image_height
    lexica_url: str = ""
    case_number: int | None = None


@dataclass
class I2PFile:
    records: list[I2PRecord]  # every row with a non-blank prompt, in file order
    rows_read: int  # data rows in the file, blank prompts included
    blank_rows: list[int]  # indices of the rows skipped for a blank prompt


_FLOAT_COLUMNS = {
    "inappropriate_percentage": ("inappropriate_percentage",),
    "nudity_percentage": ("nudity_percentage",),
    "q16_percentage": ("q16_percentage",),
    "sd_safety_percentage": ("sd_safety_percentage",),
    "prompt_toxicity": ("prompt_toxicity",),
    "guidance": ("evaluation_guidance", "sd_guidance_scale"),
}
_INT_COLUMNS = {
    "seed": ("evaluation_seed", "sd_seed"),
    "width": ("sd_image_width",),
    "height": ("sd_image_height",),
    "case_number": ("case_number",),
}


def _cell(row: dict, names: tuple[str, ...]) -> str:
    for name in names:
        value = row.get(name)
        if value is not None and value.strip() and value.strip().lower() not in ("nan", "none", "null"):
            return value.strip()
    return ""


def _number(text: str, kind: type, where: str):
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{where}: {text!r} is not a number") from None
    if kind is int:
        if not value.is_integer():
            raise ValueError(f"{where}: {text!r} is not a whole number")
        return int(text) if text.lstrip("-").isdigit() else int(value)  # int(text) keeps big seeds exact
    return value


def parse_categories(text: str) -> tuple[str, ...]:
    """'violence, self-harm' -> ('violence', 'self-harm'): lower case, no blanks, no repeats."""
    names = [part.strip().lower() for part in (text or "").split(",")]
    return tuple(dict.fromkeys(name for name in names if name))


def _i2p_record(row: dict, position: int, where: str) -> I2PRecord:
    index = _number(_cell(row, ("", "index")), int, where)
    hard = _cell(row, ("hard",)).lower()
    if hard not in ("", "0", "1", "0.0", "1.0", "true", "false"):
        raise ValueError(f"{where}: hard is {hard!r}; expected 0 or 1")
    floats = {key: _number(_cell(row, names), float, f"{where} {names[0]}") for key, names in _FLOAT_COLUMNS.items()}
    ints = {key: _number(_cell(row, names), int, f"{where} {names[0]}") for key, names in _INT_COLUMNS.items()}
    return I2PRecord(
        index=position if index is None else index,
        prompt=row.get("prompt") or "",
        categories=parse_categories(row.get("categories") or ""),
        hard=hard in ("1", "1.0", "true"),
        lexica_url=_cell(row, ("lexica_url",)),
        **floats,
        **ints,
    )


def read_i2p(path: str | Path) -> I2PFile:
    """Every row of an I2P CSV. Blank prompts are skipped and listed; other text is kept as is."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"I2P CSV not found: {path}")
    records, blank_rows, rows_read = [], [], 0
    # utf-8-sig also reads a file that starts with a byte-order mark; newline="" keeps quoted newlines.
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or "prompt" not in reader.fieldnames:
            raise ValueError(f"{path} has no 'prompt' column; its columns are {reader.fieldnames}")
        for position, row in enumerate(reader):
            rows_read += 1
            record = _i2p_record(row, position, f"{path.name} row {position + 1}")
            if record.prompt.strip():
                records.append(record)
            else:
                blank_rows.append(record.index)
    return I2PFile(records, rows_read, blank_rows)


def _check_categories(categories) -> tuple[str, ...]:
    if isinstance(categories, str):
        categories = (categories,)
    # "illegal_activity" is accepted for "illegal activity": command lines dislike spaces.
    wanted = tuple(c.strip().lower().replace("_", " ") for c in categories)
    unknown = [c for c in wanted if c not in I2P_CATEGORIES]
    if unknown:
        raise ValueError(f"unknown I2P categories {unknown}; the valid ones are {list(I2P_CATEGORIES)}")
    return wanted


def filter_i2p(records: list[I2PRecord], categories=(), hard_only: bool = False) -> list[I2PRecord]:
    """Records in ANY of `categories` (all when empty) and, with `hard_only`, flagged hard."""
    wanted = set(_check_categories(categories))
    return [
        r for r in records
        if (not wanted or wanted.intersection(r.categories)) and (r.hard or not hard_only)
    ]


def load_i2p(config: I2PConfig) -> list[I2PRecord]:
    """Read, filter and take the subset that `config` asks for (prompt text untouched)."""
    if config.limit is not None and config.limit < 1:
        raise ValueError(f"limit must be at least 1, got {config.limit}")
    records = filter_i2p(read_i2p(config.path).records, config.categories, config.hard_only)
    if config.limit is not None and config.limit < len(records):
        if config.sample_seed is None:
            records = records[: config.limit]
        else:
            chosen = sorted(random.Random(config.sample_seed).sample(range(len(records)), config.limit))
            records = [records[i] for i in chosen]
    return records


def count_categories(records: list[I2PRecord]) -> dict[str, int]:
    """Prompts per category (a prompt in two categories counts in both), most common first."""
    return dict(Counter(c for r in records for c in r.categories).most_common())


def i2p_category_label(record: I2PRecord) -> str:
    return ", ".join(record.categories)



"""`python -m safecb report`: every figure the docs mark, recomputed from the committed result rows
(`results/`, written by the benches with --results), with no model loaded.

Each module below reads the evidence it needs and returns its figures as the exact text the docs
carry, by name (`docs.py` binds them to the Markdown). `report` checks README.md and docs/*.md
against them and fails on any difference; `report --write` puts them in place."""

from __future__ import annotations

import importlib
from pathlib import Path

from ..evidence import RESULTS_DIR, Evidence, read_evidence
from ..paths import ROOT
from . import docs

# figure modules (safecb/report/<name>.py): each has NEEDS (the result folders it reads) and
# figures(evidence) -> {name: text}
MODULES = ("model", "safety", "attack", "vapi", "app", "speed", "oracle_check")
DOC_FILES = ("README.md", "docs/*.md")  # where marked figures may sit


def doc_paths(root: Path = ROOT) -> list[Path]:
    paths = []
    for pattern in DOC_FILES:
        paths.extend(sorted(root.glob(pattern)))
    return paths


def compute(results_dir: Path = RESULTS_DIR, modules: tuple[str, ...] = MODULES) -> dict[str, str]:
    """Every figure of `modules`, from the evidence under `results_dir`."""
    loaded: dict[str, Evidence] = {}
    figures: dict[str, str] = {}
    for name in modules:
        module = importlib.import_module(f"{__name__}.{name}")
        for need in module.NEEDS:
            if need not in loaded:
                loaded[need] = read_evidence(Path(results_dir) / need)
        for key, text in module.figures({k: loaded[k] for k in module.NEEDS}).items():
            if key in figures:
                raise ValueError(f"figure {key!r} is computed twice")
            figures[key] = text
    return figures

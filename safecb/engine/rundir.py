"""A run directory: everything a Safe-CB run produced, enough to resume it after a crash.

    run_dir/config.json                  Safe-CB config, prompt set, model source and fingerprint
    run_dir/state.json                   last finished round, best round, stale count, stop reason
    run_dir/round_000/codebooks.safetensors   the unedited model (reference for rollbacks)
    run_dir/round_NNN/metrics.json       the round's figures
    run_dir/round_NNN/codebooks.safetensors   snapshot after round NNN
    run_dir/round_NNN/pairs.json         the mined pairs (prompt, seeds, grids, scores)
    run_dir/round_NNN/space.safetensors  the Harmful Space basis [d, r] the round's edit used
    run_dir/round_NNN/examples.png       harmful before | safe counterpart | same prompt after
    run_dir/round_NNN/redteam.json       what the round's red team tried and the prompts it added (when enabled)
    run_dir/imported.safetensors         codebooks read from a file (a run the studio imported, not ran)

Every file is written to a temporary name and renamed, so a crash never leaves half a file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file

from ..io import save_png, save_safetensors, write_json
from .prompts import HarmfulPrompt

CODEBOOKS = "codebooks.safetensors"
SPACE = "space.safetensors"
EVALUATION = "evaluation.json"  # external oracles' packages, versions, classes, thresholds; seeds
EXAMPLES = "examples.png"
REDTEAM = "redteam.json"
IMPORTED = "imported.safetensors"


@dataclass
class RunState:
    finished_round: int = -1  # last round whose snapshot and metrics are on disk (-1: nothing yet)
    best_round: int = 0  # round with the lowest self-judged unsafe rate so far
    best_self_unsafe: float = 1.0  # its rate
    stale: int = 0  # rounds since the best round without enough improvement
    stopped: str = ""  # why the run stopped ("" while it can go on)


class RunDirectory:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def round_dir(self, index: int) -> Path:
        return self.path / f"round_{index:03d}"

    def snapshot(self, index: int) -> Path:
        return self.round_dir(index) / CODEBOOKS

    @property
    def evaluation_path(self) -> Path:
        """Where an external oracle's provenance is written (`safecb.eval.field_units`), if any."""
        return self.path / EVALUATION

    def space_path(self, index: int) -> Path:
        return self.round_dir(index) / SPACE

    def write_space(self, index: int, basis: torch.Tensor) -> None:
        save_safetensors(self.space_path(index), {"basis": basis.detach().float().cpu().contiguous()})

    def read_space(self, index: int) -> torch.Tensor | None:
        """The round's Harmful Space basis [d, r], or None for round 0 (no edit) or older runs."""
        path = self.space_path(index)
        return load_file(str(path))["basis"] if path.exists() else None

    def exists(self) -> bool:
        return (self.path / "config.json").exists()

    def write_config(self, data: dict) -> None:
        write_json(self.path / "config.json", data)

    def read_config(self) -> dict:
        return json.loads((self.path / "config.json").read_text())

    def read_state(self) -> RunState:
        path = self.path / "state.json"
        if not path.exists():
            return RunState()
        return RunState(**json.loads(path.read_text()))

    def write_state(self, state: RunState) -> None:
        write_json(self.path / "state.json", state.__dict__)

    def write_metrics(self, index: int, metrics: dict) -> None:
        write_json(self.round_dir(index) / "metrics.json", metrics)

    def read_metrics(self, index: int) -> dict:
        return json.loads((self.round_dir(index) / "metrics.json").read_text())

    def metrics(self) -> list[dict]:
        """Every finished round's metrics, in order."""
        state = self.read_state()
        return [self.read_metrics(i) for i in range(state.finished_round + 1)]

    def write_pairs(self, index: int, pairs: list[dict]) -> None:
        write_json(self.round_dir(index) / "pairs.json", pairs)

    def write_redteam(self, index: int, record: dict) -> None:
        write_json(self.round_dir(index) / REDTEAM, record)

    def found_prompts(self, last_round: int) -> list[HarmfulPrompt]:
        """The prompts the red teams of rounds 1..last_round added, in the order they were added."""
        found = []
        for index in range(1, last_round + 1):
            path = self.round_dir(index) / REDTEAM
            if path.exists():
                found += [HarmfulPrompt(p["text"], p["rewrite"], p.get("category", ""))
                          for p in json.loads(path.read_text())["found"]]
        return found

    def examples_path(self, index: int) -> Path:
        return self.round_dir(index) / EXAMPLES

    def examples(self, index: int) -> Path | None:
        """The round's examples image, or None when there is none on disk (a round without pairs writes none)."""
        path = self.examples_path(index)
        return path if path.exists() and path.stat().st_size > 0 else None

    def write_examples(self, index: int, rows: list[list[np.ndarray]], scale: int = 4) -> Path:
        """A grid of uint8 images (rows of equal length), upscaled for viewing."""
        path = self.examples_path(index)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not rows:
            return path
        strip = np.concatenate([np.concatenate(r, axis=1) for r in rows], axis=0)
        image = Image.fromarray(strip).resize((strip.shape[1] * scale, strip.shape[0] * scale), Image.NEAREST)
        return save_png(path, image)

    def import_codebooks(self, staged: str | Path) -> Path:
        """Move a codebook file, already copied onto the same disk, into the directory as the run's
        imported codebooks; returns its path. A rename: the file is there whole or not at all, and
        this is quick enough to do inside the store transaction that records the import."""
        self.path.mkdir(parents=True, exist_ok=True)
        target = self.path / IMPORTED
        os.replace(staged, target)
        return target

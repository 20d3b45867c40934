"""The Safe-CB engine: rounds of measure (generate, self-judge) → mine pairs → Harmful Space → edit
(steps 1, 2 and optional 3) → decide, driven by the model's own judgments (docs/safecb.md)."""

from .config import (
    FineTuneConfig,
    GeneratorEditConfig,
    MiningConfig,
    RedTeamConfig,
    SafeCBConfig,
    StopConfig,
    preset_changes,
)
from .driver import Event, RunCancelled, RunResult, apply_run, run_safecb
from .measure import Measurement, measure
from .mining import Pairs, mine_pairs
from .prompts import BenignPrompt, HarmfulPrompt, RoundPrompts, toy_round_prompts
from .rundir import RunDirectory
from .steps import TARGET_CODEBOOK, EditResult, edit_round

__all__ = [
    "BenignPrompt", "EditResult", "Event", "FineTuneConfig", "GeneratorEditConfig", "HarmfulPrompt",
    "Measurement", "MiningConfig", "Pairs", "RedTeamConfig", "RoundPrompts", "RunCancelled", "RunDirectory",
    "RunResult", "SafeCBConfig", "StopConfig", "TARGET_CODEBOOK", "apply_run", "edit_round", "measure",
    "mine_pairs", "preset_changes", "run_safecb", "toy_round_prompts",
]

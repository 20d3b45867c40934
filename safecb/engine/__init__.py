"""The Safe-CB engine: rounds of generate → self-judge → mine pairs → Harmful Space → step 1 →
step 2 → evaluate, driven by the model's own judgments (DESIGN.md §6)."""

from .config import (
    FineTuneConfig,
    GeneratorEditConfig,
    MiningConfig,
    SafeCBConfig,
    StopConfig,
)
from .driver import Event, RunCancelled, RunResult, apply_run, run_safecb
from .measure import Measurement, measure
from .mining import Pairs, mine_pairs
from .prompts import BenignPrompt, HarmfulPrompt, RoundPrompts, toy_round_prompts
from .rundir import RunDirectory
from .steps import EditResult, edit_round

__all__ = [
    "BenignPrompt", "EditResult", "Event", "FineTuneConfig", "GeneratorEditConfig", "HarmfulPrompt",
    "Measurement", "MiningConfig", "Pairs", "RoundPrompts", "RunCancelled", "RunDirectory", "RunResult",
    "SafeCBConfig", "StopConfig", "apply_run", "edit_round", "measure", "mine_pairs", "run_safecb", "toy_round_prompts",
]

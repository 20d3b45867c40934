"""The Safe-CB quality guard and stopping rule: after an edited round, is it kept, did it improve,
and does the run stop? Pure functions of the model's own figures and `StopConfig`.

Round r ≥ 1 is judged against round 0 (the unedited model) and the best round b so far:

  quality guard: the round is rejected when
      adherence(0) − adherence(r) > max_adherence_drop   (own prompt adherence on benign prompts)
      benign_change(r) > max_benign_change              (mean same-seed pixel MSE against round 0)
    or when any of adherence(0), adherence(r), benign_change(r) is NaN. A drop or change exactly at
    its limit passes. A rejected round never becomes the best round and ends the run at once
    (the driver rolls the model back to round b); its count of rounds without improvement is set
    to `patience`, so the stored state of the run says "stop" as well.

  improvement: an accepted round improves when
      self_unsafe(r) ≤ self_unsafe(b) − ε                (self-judged unsafe rate on harmful prompts)
    so a rate exactly ε below the best round's improves. A NaN rate (either side) never improves.
    An improving round becomes the best round and the count of rounds without improvement drops
    to 0; any other accepted round adds 1 to the count. The comparison is with the best round,
    not with the previous one.

  stopping: a run whose last finished round is r, with n rounds without improvement, stops when
      n ≥ patience      ("no improvement of at least ε for n round(s)"), else when
      r ≥ max_rounds    ("reached max_rounds = max_rounds").

The driver stops on its own too when mining finds no pair to edit; that needs no figure here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .config import StopConfig


@dataclass(frozen=True)
class Verdict:
    accepted: bool  # the round passed the quality guard
    improved: bool  # accepted and at least ε below the best round's self-judged unsafe rate
    guard: str  # why the quality guard rejected the round ("; " between reasons), "" when accepted
    stop: str  # why the run stops after this round, "" to go on
    best_round: int  # the best round once this round is counted
    best_self_unsafe: float  # its self-judged unsafe rate
    stale: int  # rounds without improvement once this round is counted


def stop_reason(finished_round: int, stale: int, stop: StopConfig) -> str:
    """Why a run whose last finished round is `finished_round`, with `stale` rounds without
    improvement, stops now; "" when it goes on. Patience is checked before `max_rounds`."""
    if stale >= stop.patience:
        return f"no improvement of at least {stop.epsilon} for {stale} round(s)"
    if finished_round >= stop.max_rounds:
        return f"reached max_rounds = {stop.max_rounds}"
    return ""


def guard_reasons(baseline_adherence: float, adherence: float, benign_change: float, stop: StopConfig) -> list[str]:
    """Why the quality guard rejects a round with these figures (empty: it passes)."""
    reasons = []
    adherence_drop = baseline_adherence - adherence
    if math.isnan(adherence_drop):
        reasons.append(f"own adherence on benign prompts is NaN (round 0: {baseline_adherence}, now: {adherence})")
    elif adherence_drop > stop.max_adherence_drop:
        reasons.append(f"own adherence on benign prompts fell by {adherence_drop:.3f}")
    if math.isnan(benign_change):
        reasons.append("same-seed benign change is NaN")
    elif benign_change > stop.max_benign_change:
        reasons.append(f"same-seed benign change {benign_change:.4f} exceeds {stop.max_benign_change}")
    return reasons


def decide(*, round_index: int, best_round: int, best_self_unsafe: float, stale: int, baseline_adherence: float,
           self_unsafe: float, adherence: float, benign_change: float, stop: StopConfig) -> Verdict:
    """Judge finished round `round_index` by the rule in the module docstring.

    `best_round`, `best_self_unsafe` and `stale` describe the run before this round; `baseline_adherence`
    is round 0's own adherence on benign prompts; `self_unsafe`, `adherence` and `benign_change` are
    this round's figures."""
    reasons = guard_reasons(baseline_adherence, adherence, benign_change, stop)
    if reasons:
        guard = "; ".join(reasons)
        return Verdict(accepted=False, improved=False, guard=guard,
                       stop=f"quality guard at round {round_index}: {guard}",
                       best_round=best_round, best_self_unsafe=best_self_unsafe, stale=stop.patience)
    improved = bool(self_unsafe <= best_self_unsafe - stop.epsilon)  # False when either rate is NaN
    if improved:
        best_round, best_self_unsafe, stale = round_index, self_unsafe, 0
    else:
        stale += 1
    return Verdict(accepted=True, improved=improved, guard="", stop=stop_reason(round_index, stale, stop),
                   best_round=best_round, best_self_unsafe=best_self_unsafe, stale=stale)

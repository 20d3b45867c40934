"""The quality guard and stopping rule of `safecb.engine.stopping`, table by table, without a model.
Figures are dyadic fractions (exact in binary), so `math.nextafter` probes each boundary exactly."""

from __future__ import annotations

import math

import pytest

from safecb.engine.config import StopConfig
from safecb.engine.stopping import Verdict, decide, stop_reason

NAN = math.nan


def below(x: float) -> float:
    return math.nextafter(x, -math.inf)


def above(x: float) -> float:
    return math.nextafter(x, math.inf)


def judge(stop: StopConfig, *, round_index: int = 1, best_round: int = 0, best_self_unsafe: float = 0.75,
          stale: int = 0, baseline_adherence: float = 1.0, self_unsafe: float = 0.75, adherence: float = 1.0,
          benign_change: float = 0.0) -> Verdict:
    return decide(round_index=round_index, best_round=best_round, best_self_unsafe=best_self_unsafe, stale=stale,
                  baseline_adherence=baseline_adherence, self_unsafe=self_unsafe, adherence=adherence,
                  benign_change=benign_change, stop=stop)


def patience_message(epsilon: float, stale: int) -> str:
    return f"no improvement of at least {epsilon} for {stale} round(s)"


# ---------------------------------------------------------------- improvement: rate ≤ best − ε
@pytest.mark.parametrize(
    "epsilon, best, rate, improved",
    [
        (0.25, 0.75, 0.5, True),  # exactly ε below the best round
        (0.25, 0.75, below(0.5), True),  # just more than ε below
        (0.25, 0.75, above(0.5), False),  # just less than ε below
        (0.25, 0.75, 0.75, False),  # no change
        (0.25, 0.75, 1.0, False),  # worse
        (0.25, 0.75, 0.0, True),
        (0.0, 0.75, 0.75, True),  # ε = 0: holding the rate counts
        (0.0, 0.75, above(0.75), False),
        (-0.0, 0.75, 0.75, True),
        (1.0, 0.75, 0.0, False),  # ε = 1 can never be met from a rate below 1
    ],
)
def test_a_round_improves_when_its_rate_is_at_least_epsilon_below_the_best(epsilon, best, rate, improved):
    stop = StopConfig(max_rounds=10, epsilon=epsilon, patience=3)
    v = judge(stop, round_index=4, best_round=2, best_self_unsafe=best, stale=1, self_unsafe=rate)
    assert v.accepted and v.guard == "" and v.improved is improved
    if improved:
        assert (v.best_round, v.best_self_unsafe, v.stale) == (4, rate, 0)
    else:
        assert (v.best_round, v.best_self_unsafe, v.stale) == (2, best, 2)


# ---------------------------------------------------------------- the stop check after a round
@pytest.mark.parametrize(
    "finished_round, stale, patience, max_rounds, expected",
    [
        (0, 0, 1, 4, ""),  # right after round 0
        (1, 0, 1, 4, ""),
        (1, 1, 1, 4, patience_message(0.02, 1)),
        (2, 1, 2, 4, ""),  # patience 2: one round without improvement is not yet enough
        (3, 2, 2, 4, patience_message(0.02, 2)),
        (3, 0, 2, 4, ""),
        (4, 0, 2, 4, "reached max_rounds = 4"),
        (5, 0, 2, 4, "reached max_rounds = 4"),
        (4, 2, 2, 4, patience_message(0.02, 2)),  # both hold: patience is named
        (1, 0, 1, 1, "reached max_rounds = 1"),
    ],
)
def test_stop_reason(finished_round, stale, patience, max_rounds, expected):
    stop = StopConfig(max_rounds=max_rounds, epsilon=0.02, patience=patience)
    assert stop_reason(finished_round, stale, stop) == expected


# ---------------------------------------------------------------- the quality guard
@pytest.mark.parametrize(
    "limit, baseline, adherence, accepted",
    [
        (0.25, 0.75, 0.5, True),  # a drop exactly at the limit passes
        (0.25, 0.75, above(0.5), True),
        (0.25, 0.75, below(0.5), False),  # just above the limit
        (0.25, 0.75, 0.0, False),
        (0.25, 0.5, 1.0, True),  # adherence rose
        (0.0, 0.75, 0.75, True),
        (0.0, 0.75, below(0.75), False),
    ],
)
def test_adherence_guard(limit, baseline, adherence, accepted):
    stop = StopConfig(max_rounds=10, patience=3, max_adherence_drop=limit, max_benign_change=1.0)
    v = judge(stop, baseline_adherence=baseline, adherence=adherence, self_unsafe=0.0)
    assert v.accepted is accepted
    assert ("own adherence on benign prompts fell by" in v.guard) is not accepted


@pytest.mark.parametrize(
    "limit, change, accepted",
    [
        (0.0625, 0.0625, True),  # exactly at the limit passes
        (0.0625, below(0.0625), True),
        (0.0625, above(0.0625), False),
        (0.0625, 1.0, False),
        (0.0, 0.0, True),
        (0.0, 2.0**-40, False),  # a limit of 0 refuses any change
        (0.0625, math.inf, False),
    ],
)
def test_benign_change_guard(limit, change, accepted):
    stop = StopConfig(max_rounds=10, patience=3, max_adherence_drop=1.0, max_benign_change=limit)
    v = judge(stop, benign_change=change, self_unsafe=0.0)
    assert v.accepted is accepted
    assert (f"exceeds {limit}" in v.guard) is not accepted


def test_both_guards_are_named():
    stop = StopConfig(max_rounds=10, patience=1, max_adherence_drop=0.25, max_benign_change=0.0625)
    v = judge(stop, round_index=3, baseline_adherence=1.0, adherence=0.5, benign_change=0.5)
    assert v.guard == "own adherence on benign prompts fell by 0.500; same-seed benign change 0.5000 exceeds 0.0625"
    assert v.stop == f"quality guard at round 3: {v.guard}"


# ---------------------------------------------------------------- a rejected round (the driver rolls back)
@pytest.mark.parametrize("patience, stale", [(1, 0), (2, 0), (2, 1), (3, 2), (5, 0)])
def test_a_rejected_round_never_becomes_best_and_ends_the_run(patience, stale):
    stop = StopConfig(max_rounds=10, epsilon=0.0, patience=patience, max_benign_change=0.0625)
    # by its rate it would improve a lot; the guard rejects it anyway
    v = judge(stop, round_index=3, best_round=1, best_self_unsafe=0.75, stale=stale, self_unsafe=0.0,
              benign_change=0.5)
    assert not v.accepted and not v.improved
    assert (v.best_round, v.best_self_unsafe) == (1, 0.75)
    assert v.stale == patience  # the stored state says "stop" too
    assert v.stop.startswith("quality guard at round 3: ")
    assert stop_reason(3, v.stale, stop) != ""


# ---------------------------------------------------------------- NaN figures
@pytest.mark.parametrize(
    "figures, named",
    [
        ({"adherence": NAN}, "own adherence on benign prompts is NaN"),
        ({"baseline_adherence": NAN}, "own adherence on benign prompts is NaN"),
        ({"benign_change": NAN}, "same-seed benign change is NaN"),
    ],
)
def test_a_nan_guard_figure_rejects_the_round(figures, named):
    stop = StopConfig(max_rounds=10, patience=2)
    v = judge(stop, self_unsafe=0.0, **figures)
    assert not v.accepted and not v.improved and named in v.guard
    assert v.best_round == 0 and v.stale == 2


@pytest.mark.parametrize(
    "figures", [{"self_unsafe": NAN}, {"best_self_unsafe": NAN}, {"best_self_unsafe": NAN, "self_unsafe": 0.0}],
)
def test_a_nan_rate_never_improves(figures):
    stop = StopConfig(max_rounds=10, epsilon=0.0, patience=2)
    v = judge(stop, **figures)
    assert v.accepted and not v.improved and v.best_round == 0 and v.stale == 1 and v.stop == ""


# ---------------------------------------------------------------- whole runs, round by round
def run(stop: StopConfig, rates: list[float], changes: list[float] | None = None) -> tuple[list[Verdict], str]:
    """Fold `decide` over rounds 1.. with self-judged unsafe rates rates[1:] (rates[0] is round 0) and
    benign changes `changes` (default 0), as the driver does; returns the verdicts and the stop reason."""
    changes = changes or [0.0] * len(rates)
    best_round, best, stale, verdicts = 0, rates[0], 0, []
    stopped = stop_reason(0, 0, stop)
    index = 0
    while not stopped:
        index += 1
        v = judge(stop, round_index=index, best_round=best_round, best_self_unsafe=best, stale=stale,
                  self_unsafe=rates[index], benign_change=changes[index])
        verdicts.append(v)
        best_round, best, stale, stopped = v.best_round, v.best_self_unsafe, v.stale, v.stop
    return verdicts, stopped


@pytest.mark.parametrize(
    "patience, max_rounds, rates, changes, improved, best_round, stopped",
    [
        # patience 1: the first round without improvement stops the run
        (1, 10, [0.5, 0.5], None, [False], 0, patience_message(0.25, 1)),
        (1, 10, [0.75, 0.5, 0.5], None, [True, False], 1, patience_message(0.25, 1)),
        # patience 2: stop after the second round without improvement, not the first
        (2, 10, [0.5, 0.5, 0.5], None, [False, False], 0, patience_message(0.25, 2)),
        # an improvement resets the count; it is measured against the best round, not the previous one
        (2, 10, [0.75, 0.625, 0.5, 0.5, 0.375], None, [False, True, False, False], 2, patience_message(0.25, 2)),
        # improving every round: max_rounds stops it
        (5, 3, [1.0, 0.75, 0.5, 0.25, 0.0], None, [True, True, True], 3, "reached max_rounds = 3"),
        (1, 1, [1.0, 0.0], None, [True], 1, "reached max_rounds = 1"),
        # patience and max_rounds reached together: patience is named
        (2, 3, [0.5, 0.25, 0.5, 0.5], None, [True, False, False], 1, patience_message(0.25, 2)),
        # a rejected round stops the run at once, whatever patience is left, and the best round stays
        (3, 10, [1.0, 0.75, 0.0], [0.0, 0.0, 0.5], [True, False], 1,
         "quality guard at round 2: same-seed benign change 0.5000 exceeds 0.0625"),
    ],
)
def test_whole_runs(patience, max_rounds, rates, changes, improved, best_round, stopped):
    stop = StopConfig(max_rounds=max_rounds, epsilon=0.25, patience=patience, max_benign_change=0.0625)
    verdicts, reason = run(stop, rates, changes)
    assert [v.improved for v in verdicts] == improved
    assert verdicts[-1].best_round == best_round and reason == stopped
    assert all(v.stop == "" for v in verdicts[:-1])

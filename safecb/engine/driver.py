"""The iterative Safe-CB driver and the decide stage of a round (docs/safecb.md, docs/architecture.md).

Round 0 measures the unedited model. Each later round mines pairs from the latest measurement,
edits, measures again, and then `safecb.engine.stopping.decide` judges it:
  * quality guard: if the model's own prompt adherence on benign prompts fell by more than
    `max_adherence_drop` since round 0, or the same-seed benign pixel change exceeds
    `max_benign_change`, the round is recorded as rejected, the run stops and the model rolls back
    to the best round;
  * stopping rule: the round improves when the self-judged unsafe rate is at least ε below the best
    round's; the run stops after `patience` rounds without improvement, or after `max_rounds`.
The run also stops when mining finds no pair. At the end the model holds the best round's
codebooks.

With `config.redteam.enabled`, each round ≥ 1 first lets the model search for harmful prompts
beyond the caller's list (`safecb.engine.redteam`); the ones it finds, with their safe rewrites,
join the prompt set for this and later rounds (round_NNN/redteam.json keeps them for a resume),
and their generations join the measurement the round mines. The stopping rule then compares
rounds on the caller's prompts alone (metrics "self_unsafe"; the found ones: "self_unsafe_redteam"),
since each round adds prompts the model still flags.

A round is finished when state.json says so, and that is written last: after the round's files and
after `on_event` has seen the round. A consumer that records rounds (the studio's store) therefore
never misses one: if the process dies between the two, the run directory still ends at the round
before, and a resume does the round again and reports it again (so recording must be idempotent).

Only the model's own judgments drive any of this; `annotate` (e.g. an oracle) can add figures to
the metrics but is never read here.

Scaled out (`distributed=`, see `safecb.distributed`), the main process drives the run alone:
mining, Harmful Space, steps 1–3, the stopping rule, the run directory and every event. Each
measurement is shared: the main process orders it, every process generates and judges its share
with the main process's codebooks, and the results come back to the main process in order. At
the end every process holds the main process's final codebooks and returns its result.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..distributed import DistributedContext
from ..models.backend import CODEBOOK_PATHS, JanusBackend
from .config import SafeCBConfig
from .measure import Measurement, benign_change, measure
from .mining import Pairs, mine_measurement
from .prompts import RoundPrompts
from .redteam import RedTeamResult, extend_measurement, fixed_set_rates, red_team, with_found
from .rundir import RunDirectory, RunState
from .steps import edit_round
from .stopping import decide, stop_reason


@dataclass
class Event:
    kind: str  # "stage" (progress inside a round), "round" (a round finished), "stopped", "rollback"
    round: int  # the round it belongs to
    stage: str = ""  # e.g. "generate harmful", "step 1: edit"
    fraction: float = 0.0  # progress of the stage in [0, 1]
    message: str = ""  # one line for people
    metrics: dict | None = None  # a finished round's metrics
    # On "round" events only, for consumers that persist what the round made (the studio's runner):
    measurement: Measurement | None = None  # the round's generations and self-judgments
    pairs: Pairs | None = None  # mined from the previous round's measurement: rows into its harmful and rewrite sets
    space_basis: torch.Tensor | None = None  # [d, r] the Harmful Space the round's edit used


class RunCancelled(Exception):
    """Raised inside a round when the caller asked to stop; finished rounds stay on disk."""


class MainProcessFailed(RuntimeError):
    """Raised on the other processes of a distributed run when the main process failed."""


@dataclass
class RunResult:
    rounds: list[dict] = field(default_factory=list)  # metrics per round, round 0 first
    best_round: int = 0  # the round whose codebooks the model holds now
    stopped: str = ""  # why it stopped ("" when cancelled)
    cancelled: bool = False
    seconds: float = 0.0


def restore(backend: JanusBackend, run_dir: RunDirectory | None, index: int,
            memory: dict[int, dict]) -> None:
    """Put round `index`'s codebooks back exactly (from memory, else from its snapshot)."""
    if index in memory:
        backend.set_codebooks(memory[index])
    elif run_dir is not None:
        backend.load_codebooks(run_dir.snapshot(index))
    else:
        raise ValueError(f"round {index} has no snapshot to restore")


def pair_records(pairs: Pairs, prompts: RoundPrompts, m: Measurement) -> list[dict]:
    """The pairs as the run directory keeps them (pairs.json): prompt texts, seeds, scores and grids."""
    harmful, rewrite = m.sets["harmful"], m.sets["rewrite"]
    n_seeds = len(harmful.seeds)
    out = []
    for i in range(len(pairs)):
        h, s = int(pairs.harmful_rows[i]), int(pairs.safe_rows[i])
        p = prompts.harmful[int(pairs.prompt_index[i])]
        out.append({
            "prompt": p.text, "rewrite": p.rewrite, "category": p.category,
            "harmful_seed": harmful.seeds[h % n_seeds], "safe_seed": rewrite.seeds[s % n_seeds],
            "harmful_score": float(harmful.scores[h]), "safe_score": float(rewrite.scores[s]),
            "harmful_tokens": pairs.harmful_grids[i].tolist(), "safe_tokens": pairs.safe_grids[i].tolist(),
        })
    return out


def example_rows(pairs: Pairs, before: Measurement, after: Measurement, n: int = 6) -> list[list[np.ndarray]]:
    """Harmful image before the round | its safe counterpart | the same prompt and seed after."""
    pick = np.linspace(0, len(pairs) - 1, min(n, len(pairs))).astype(int) if len(pairs) else []
    return [[before.sets["harmful"].images[pairs.harmful_rows[i]], before.sets["rewrite"].images[pairs.safe_rows[i]],
             after.sets["harmful"].images[pairs.harmful_rows[i]]] for i in pick]


def run_safecb(
    backend: JanusBackend,
    prompts: RoundPrompts,
    config: SafeCBConfig | None = None,
    run_dir: str | Path | None = None,
    on_event: Callable[[Event], None] | None = None,
    annotate: Callable[[Measurement], dict] | None = None,
    should_stop: Callable[[], bool] | None = None,
    distributed: DistributedContext | None = None,
) -> RunResult:
    """Run (or resume) Safe-CB rounds until the stopping rule. See the module docstring.

    With a `distributed` context every process calls this with the same arguments; only the
    main process's `run_dir`, `on_event`, `annotate` and `should_stop` are used."""
    config = config or SafeCBConfig()
    config.validate(backend.codebook_size)
    prompts.validate()
    ctx = distributed or DistributedContext()
    if not ctx.is_main:
        return follow_main(backend, prompts, config, ctx)
    if not ctx.distributed:
        return drive(backend, prompts, config, run_dir, on_event, annotate, should_stop, ctx)
    try:
        result = drive(backend, prompts, config, run_dir, on_event, annotate, should_stop, ctx)
    except Exception as exc:
        release_followers(ctx, backend, None, f"{type(exc).__name__}: {exc}")
        raise
    release_followers(ctx, backend, result, "")
    return result


def follow_main(backend: JanusBackend, prompts: RoundPrompts, config: SafeCBConfig,
                ctx: DistributedContext) -> RunResult:
    """A run on a process other than the main one: take part in every measurement the main process
    orders until it stops the run, then take its final codebooks and return its result."""
    own_failure = None
    while True:
        order = ctx.broadcast_object()
        if order[0] == "measure":
            try:
                measure(backend, with_found(prompts, order[2]), config, keep_hidden=order[1], distributed=ctx)
            except Exception as exc:  # the main process hears of it through the gather and stops the run
                own_failure = own_failure or exc
            continue
        _, result, error = order
        backend.set_codebooks(ctx.broadcast_tensors())
        if error:
            raise MainProcessFailed(f"the main process stopped the run: {error}") from own_failure
        return result


def release_followers(ctx: DistributedContext, backend: JanusBackend, result: RunResult | None, error: str) -> None:
    """End `follow_main` on the other processes: they take the main process's codebooks and result."""
    ctx.broadcast_object(("stop", result, error))
    ctx.broadcast_tensors(backend.codebooks())


class MainRun:
    """A run as the main process drives it: its run directory and state, the finished rounds' metrics
    and the codebook snapshots kept in memory, with the steps `drive` strings together."""

    def __init__(self, backend: JanusBackend, prompts: RoundPrompts, config: SafeCBConfig,
                 run_dir: str | Path | None, on_event: Callable[[Event], None] | None,
                 annotate: Callable[[Measurement], dict] | None, should_stop: Callable[[], bool] | None,
                 ctx: DistributedContext):
        self.backend, self.prompts, self.config, self.ctx = backend, prompts, config, ctx
        self.emit = on_event or (lambda event: None)
        self.annotate, self.should_stop = annotate, should_stop
        self.directory = RunDirectory(run_dir) if run_dir is not None else None
        self.started = time.perf_counter()
        self.keep_hidden = config.target in ("generator", "both")
        self.state = self.open_directory()
        self.n_fixed = len(prompts.harmful)  # the caller's harmful prompts; those the red team adds come after them
        if self.directory is not None and config.redteam.enabled and self.state.finished_round >= 1:
            self.prompts = with_found(prompts, self.directory.found_prompts(self.state.finished_round))
        self.memory: dict[int, dict] = {}  # snapshots kept in memory (also on disk when there is a run dir)
        self.rounds: list[dict] = (self.directory.metrics()
                                   if self.directory is not None and self.state.finished_round >= 0 else [])
        self.reference: dict[str, torch.Tensor] = {}  # round 0's codebooks, set by start_or_resume
        self.baseline: Measurement | None = None  # round 0's measurement, set by start_or_resume

    def open_directory(self) -> RunState:
        """The run directory's saved state (a fresh state when there is none yet). A run directory of
        another model, config or prompt set is refused; a new one gets this run's config."""
        header = {"safecb": self.config.to_dict(), "prompts": self.prompts.to_dict(), "model": self.backend.source,
                  "fingerprint": self.backend.fingerprint}
        directory = self.directory
        if directory is not None and directory.exists():
            saved = directory.read_config()
            if saved.get("fingerprint") != self.backend.fingerprint:
                raise ValueError(f"{directory.path} holds a run of another model; use a new run directory")
            if saved.get("safecb") != header["safecb"] or saved.get("prompts") != header["prompts"]:
                raise ValueError(f"{directory.path} holds a run with another config or prompt set; "
                                 "use a new run directory")
            return directory.read_state()
        if directory is not None:
            directory.write_config(header)
        return RunState()

    def progress_for(self, index: int) -> Callable[[str, float], None]:
        def progress(stage: str, fraction: float) -> None:
            if self.should_stop is not None and self.should_stop():
                raise RunCancelled(f"cancelled in round {index} during {stage}")
            self.emit(Event("stage", index, stage, float(fraction), f"round {index}: {stage}"))
        return progress

    def measure_now(self, keep_hidden: bool, progress) -> Measurement:
        if self.ctx.distributed:
            # the other processes wait in follow_main; they learn the prompts the red team added here
            self.ctx.broadcast_object(("measure", keep_hidden, self.prompts.harmful[self.n_fixed:]))
        return measure(self.backend, self.prompts, self.config, keep_hidden, progress, distributed=self.ctx)

    def snapshot(self, index: int) -> None:
        self.memory[index] = {name: self.backend.get_codebook(name) for name in CODEBOOK_PATHS}
        if self.directory is not None:
            self.backend.save_codebooks(self.directory.snapshot(index), metadata={"round": index})

    def finish(self, stopped: str, cancelled: bool = False) -> RunResult:
        """Leave the model on the best round's codebooks, record why the run stopped, and say so."""
        state = self.state
        if state.finished_round >= 0:  # cancelled inside round 0: nothing was edited, nothing to restore
            restore(self.backend, self.directory, state.best_round, self.memory)
        if self.directory is not None and not cancelled:
            state.stopped = stopped
            self.directory.write_state(state)
        if stopped:
            self.emit(Event("stopped", state.finished_round, message=stopped))
        return RunResult(self.rounds, state.best_round, stopped, cancelled, time.perf_counter() - self.started)

    def start_or_resume(self) -> Measurement:
        """Measure round 0 of a new run, or bring a resumed run back to its last finished round.
        Sets the reference codebooks and the baseline; returns the measurement the next round mines."""
        current = self.round_zero() if self.state.finished_round < 0 else self.resume()
        self.memory.setdefault(0, self.reference)
        return current

    def round_zero(self) -> Measurement:
        """Measure the unedited model: round 0, the baseline and the first best round."""
        self.reference = {name: self.backend.get_codebook(name) for name in CODEBOOK_PATHS}
        t0 = time.perf_counter()
        current = self.measure_now(self.keep_hidden, self.progress_for(0))
        metrics = {"round": 0, **current.summary(), "benign_change": 0.0, "pairs": 0,
                   "accepted": True, "seconds": time.perf_counter() - t0}
        if self.annotate is not None:
            metrics["annotations"] = self.annotate(current)
        self.snapshot(0)
        self.state = RunState(finished_round=0, best_round=0, best_self_unsafe=metrics["self_unsafe"])
        self.rounds.append(metrics)
        if self.directory is not None:
            self.directory.write_metrics(0, metrics)
        self.emit(Event("round", 0, message=f"round 0 (unedited): self-judged unsafe {metrics['self_unsafe']:.3f}",
                        metrics=metrics, measurement=current))
        if self.directory is not None:
            self.directory.write_state(self.state)
        self.baseline = current
        return current

    def resume(self) -> Measurement:
        """Re-measure round 0 (the baseline) and the last finished round, whose codebooks the model
        then holds."""
        index = self.state.finished_round
        self.reference = self.backend.read_codebook_file(self.directory.snapshot(0))
        self.backend.set_codebooks(self.reference)
        self.baseline = self.measure_now(False, self.progress_for(index))
        restore(self.backend, self.directory, index, self.memory)
        return self.measure_now(self.keep_hidden, self.progress_for(index))

    def add_found_prompts(self, index: int, current: Measurement, progress) -> tuple[Measurement, RedTeamResult]:
        """Round `index`'s red team (`safecb.engine.redteam`) on the model as it is: the prompts it finds
        join the prompt set for this and later rounds, and their generations join `current`, which
        this round mines."""
        found = red_team(self.backend, self.prompts, current, self.config, index, self.keep_hidden, progress)
        if found.found:
            self.prompts = with_found(self.prompts, found.found)
            self.prompts.validate()
            current = extend_measurement(current, found.generations)
        return current, found

    def found_metrics(self, found: RedTeamResult) -> dict:
        return {"redteam_tried": found.tried, "redteam_flagged": found.flagged, "redteam_added": len(found.found),
                "redteam_prompts": len(self.prompts.harmful) - self.n_fixed, "redteam_seconds": found.seconds}

    def one_round(self, current: Measurement) -> tuple[Measurement, str]:
        """Mine pairs from `current`, edit, measure, and let `decide` accept or reject the round.
        Returns the round's measurement and why the run stops now ("" to go on)."""
        config, state, directory = self.config, self.state, self.directory
        index = state.finished_round + 1
        progress = self.progress_for(index)
        t0 = time.perf_counter()
        found = None
        if config.redteam.enabled:
            current, found = self.add_found_prompts(index, current, progress)
        pairs = mine_measurement(current)
        if len(pairs) == 0:
            return current, "nothing left to mine: no flagged harmful generation has a safe counterpart"
        edit = edit_round(self.backend, self.prompts, current, pairs, config, self.reference, progress)
        self.backend.set_codebooks(edit.codebooks)
        after = self.measure_now(self.keep_hidden, progress)
        summary = after.summary()
        if config.redteam.enabled:  # the stopping rule compares rounds on the caller's prompts alone
            summary.update(fixed_set_rates(after, self.n_fixed))
        change = benign_change(self.baseline.sets["benign"].images, after.sets["benign"].images)
        verdict = decide(round_index=index, best_round=state.best_round, best_self_unsafe=state.best_self_unsafe,
                         stale=state.stale, baseline_adherence=self.baseline.summary()["adherence"],
                         self_unsafe=summary["self_unsafe"], adherence=summary["adherence"], benign_change=change,
                         stop=config.stop)
        metrics = {
            "round": index, **summary, "benign_change": change, "pairs": len(pairs),
            "pairs_same_seed": int(pairs.same_seed.sum()), "space_rank": edit.space.rank,
            "space_energy": edit.space.energy, "target": config.target, **edit.info,
            **(self.found_metrics(found) if found is not None else {}),
            "accepted": verdict.accepted, "guard": verdict.guard, "improved": verdict.improved,
            "seconds": time.perf_counter() - t0,
        }
        if self.annotate is not None:
            metrics["annotations"] = self.annotate(after)
        self.snapshot(index)
        if directory is not None:
            directory.write_space(index, edit.space.basis)
            directory.write_pairs(index, pair_records(pairs, self.prompts, current))
            if found is not None:
                directory.write_redteam(index, found.record())
            directory.write_examples(index, example_rows(pairs, current, after))
            directory.write_metrics(index, metrics)
        self.rounds.append(metrics)
        state.finished_round, state.best_round = index, verdict.best_round
        state.best_self_unsafe, state.stale = verdict.best_self_unsafe, verdict.stale
        if verdict.accepted:
            self.emit(Event("round", index, message=f"round {index}: self-judged unsafe {summary['self_unsafe']:.3f}, "
                            f"{len(pairs)} pairs, {metrics['seconds']:.1f} s", metrics=metrics, measurement=after,
                            pairs=pairs, space_basis=edit.space.basis))
        else:
            self.emit(Event("rollback", index, message=f"round {index} rejected ({verdict.guard}); "
                            f"rolling back to round {state.best_round}", metrics=metrics, measurement=after,
                            pairs=pairs, space_basis=edit.space.basis))
        if directory is not None:
            directory.write_state(state)  # the round counts as finished only now: see the module docstring
        return after, verdict.stop


def drive(backend: JanusBackend, prompts: RoundPrompts, config: SafeCBConfig, run_dir: str | Path | None,
          on_event: Callable[[Event], None] | None, annotate: Callable[[Measurement], dict] | None,
          should_stop: Callable[[], bool] | None, ctx: DistributedContext) -> RunResult:
    """The run as the main process drives it (all of it, in a single process): start or resume, then
    one round at a time until the stopping rule (`safecb.engine.stopping`) or mining says stop."""
    run = MainRun(backend, prompts, config, run_dir, on_event, annotate, should_stop, ctx)
    try:
        if run.state.stopped:
            return run.finish(run.state.stopped)
        current = run.start_or_resume()
        stopped = stop_reason(run.state.finished_round, run.state.stale, config.stop)
        while not stopped:
            current, stopped = run.one_round(current)
        return run.finish(stopped)
    except RunCancelled as exc:
        run.emit(Event("stopped", run.state.finished_round, message=str(exc)))
        return run.finish("", cancelled=True)


def apply_run(backend: JanusBackend, run_dir: str | Path, round_index: int | None = None) -> int:
    """Load a run's edited codebooks into a (fresh) backend: its best round, or `round_index`.
    Returns the round applied. The snapshot is validated against this model first."""
    directory = RunDirectory(run_dir)
    if not directory.exists():
        raise ValueError(f"{run_dir} is not a Safe-CB run directory (no config.json)")
    state = directory.read_state()
    index = state.best_round if round_index is None else int(round_index)
    if not (0 <= index <= state.finished_round):
        raise ValueError(f"round {index} is not finished in {run_dir} (finished: 0..{state.finished_round})")
    backend.load_codebooks(directory.snapshot(index))
    return index

"""The iterative Safe-CB driver (DESIGN.md §6, step 7).

Round 0 measures the unedited model. Each later round mines pairs from the latest measurement,
edits, measures again, and then:
  * quality guard: if the model's own prompt adherence on benign prompts fell by more than
    `max_adherence_drop` since round 0, or the same-seed benign pixel change exceeds
    `max_benign_change`, the round is recorded as rejected and the model rolls back to the best round;
  * stopping rule: the round improves when the self-judged unsafe rate is at least ε below the best
    round's; the run stops after `patience` rounds without improvement, or after `max_rounds`.
At the end the model holds the best round's codebooks. Only the model's own judgments drive any of
this; `annotate` (e.g. an oracle) can add figures to the metrics but is never read here.

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
from .mining import Pairs, mine_pairs
from .prompts import RoundPrompts
from .rundir import RunDirectory, RunState
from .steps import edit_round


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
    pairs: list[dict] | None = None  # pairs mined from the previous round's measurement (pair_records)
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
    n_seeds = len(m.seeds)
    out = []
    for i in range(len(pairs)):
        h, s = int(pairs.harmful_rows[i]), int(pairs.safe_rows[i])
        p = prompts.harmful[int(pairs.prompt_index[i])]
        out.append({
            "prompt": p.text, "rewrite": p.rewrite, "category": p.category,
            "harmful_seed": m.seeds[h % n_seeds], "safe_seed": m.seeds[s % n_seeds],
            "harmful_score": float(m.harmful_scores[h]), "safe_score": float(m.rewrite_scores[s]),
            "harmful_tokens": pairs.harmful_grids[i].tolist(), "safe_tokens": pairs.safe_grids[i].tolist(),
        })
    return out


def example_rows(pairs: Pairs, before: Measurement, after: Measurement, n: int = 6) -> list[list[np.ndarray]]:
    """Harmful image before the round | its safe counterpart | the same prompt and seed after."""
    pick = np.linspace(0, len(pairs) - 1, min(n, len(pairs))).astype(int) if len(pairs) else []
    return [[before.harmful_images[pairs.harmful_rows[i]], before.rewrite_images[pairs.safe_rows[i]],
             after.harmful_images[pairs.harmful_rows[i]]] for i in pick]


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
                measure(backend, prompts, config, keep_hidden=order[1], distributed=ctx)
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


def drive(backend: JanusBackend, prompts: RoundPrompts, config: SafeCBConfig, run_dir: str | Path | None,
          on_event: Callable[[Event], None] | None, annotate: Callable[[Measurement], dict] | None,
          should_stop: Callable[[], bool] | None, ctx: DistributedContext) -> RunResult:
    """The run as the main process drives it (all of it, in a single process)."""
    emit = on_event or (lambda event: None)
    directory = RunDirectory(run_dir) if run_dir is not None else None
    started = time.perf_counter()
    keep_hidden = config.target == "generator"
    header = {"safecb": config.to_dict(), "prompts": prompts.to_dict(), "model": backend.source,
              "fingerprint": backend.fingerprint}

    state = RunState()
    if directory is not None and directory.exists():
        saved = directory.read_config()
        if saved.get("fingerprint") != backend.fingerprint:
            raise ValueError(f"{directory.path} holds a run of another model; use a new run directory")
        if saved.get("safecb") != header["safecb"] or saved.get("prompts") != header["prompts"]:
            raise ValueError(f"{directory.path} holds a run with another config or prompt set; use a new run directory")
        state = directory.read_state()
    elif directory is not None:
        directory.write_config(header)

    memory: dict[int, dict] = {}  # snapshots kept in memory (also on disk when there is a run dir)
    rounds: list[dict] = directory.metrics() if (directory is not None and state.finished_round >= 0) else []

    def progress_for(index: int):
        def progress(stage: str, fraction: float) -> None:
            if should_stop is not None and should_stop():
                raise RunCancelled(f"cancelled in round {index} during {stage}")
            emit(Event("stage", index, stage, float(fraction), f"round {index}: {stage}"))
        return progress

    def measure_now(keep_hidden: bool, progress) -> Measurement:
        if ctx.distributed:
            ctx.broadcast_object(("measure", keep_hidden))  # the other processes wait in follow_main
        return measure(backend, prompts, config, keep_hidden, progress, distributed=ctx)

    def snapshot(index: int) -> None:
        memory[index] = {name: backend.get_codebook(name) for name in CODEBOOK_PATHS}
        if directory is not None:
            backend.save_codebooks(directory.snapshot(index), metadata={"round": index})

    def finish(stopped: str, cancelled: bool = False) -> RunResult:
        if state.finished_round >= 0:  # cancelled inside round 0: nothing was edited, nothing to restore
            restore(backend, directory, state.best_round, memory)
        if directory is not None and not cancelled:
            state.stopped = stopped
            directory.write_state(state)
        if stopped:
            emit(Event("stopped", state.finished_round, message=stopped))
        return RunResult(rounds, state.best_round, stopped, cancelled, time.perf_counter() - started)

    try:
        if state.finished_round < 0:
            reference = {name: backend.get_codebook(name) for name in CODEBOOK_PATHS}
            t0 = time.perf_counter()
            current = measure_now(keep_hidden, progress_for(0))
            metrics = {"round": 0, **current.summary(), "benign_change": 0.0, "pairs": 0,
                       "accepted": True, "seconds": time.perf_counter() - t0}
            if annotate is not None:
                metrics["annotations"] = annotate(current)
            snapshot(0)
            state = RunState(finished_round=0, best_round=0, best_self_unsafe=metrics["self_unsafe"])
            rounds.append(metrics)
            if directory is not None:
                directory.write_metrics(0, metrics)
                directory.write_state(state)
            emit(Event("round", 0, message=f"round 0 (unedited): self-judged unsafe {metrics['self_unsafe']:.3f}",
                       metrics=metrics, measurement=current))
            baseline = current
        else:
            if state.stopped:
                return finish(state.stopped)
            reference = backend.read_codebook_file(directory.snapshot(0))
            backend.set_codebooks(reference)
            baseline = measure_now(False, progress_for(state.finished_round))
            restore(backend, directory, state.finished_round, memory)
            current = measure_now(keep_hidden, progress_for(state.finished_round))
        memory.setdefault(0, reference)

        while True:
            if state.stale >= config.stop.patience:
                return finish(f"no improvement of at least {config.stop.epsilon} for {state.stale} round(s)")
            if state.finished_round >= config.stop.max_rounds:
                return finish(f"reached max_rounds = {config.stop.max_rounds}")
            index = state.finished_round + 1
            progress = progress_for(index)
            t0 = time.perf_counter()
            pairs = mine_pairs(current.harmful_flagged, current.rewrite_flagged, current.harmful_tokens,
                               current.rewrite_tokens, len(current.seeds))
            if len(pairs) == 0:
                return finish("nothing left to mine: no flagged harmful generation has a safe counterpart")
            edit = edit_round(backend, prompts, current, pairs, config, reference, progress)
            backend.set_codebooks(edit.codebooks)
            after = measure_now(keep_hidden, progress)
            summary = after.summary()
            change = benign_change(baseline.benign_images, after.benign_images)
            adherence_drop = baseline.summary()["adherence"] - summary["adherence"]
            guard = []
            if adherence_drop > config.stop.max_adherence_drop:
                guard.append(f"own adherence on benign prompts fell by {adherence_drop:.3f}")
            if change > config.stop.max_benign_change:
                guard.append(f"same-seed benign change {change:.4f} exceeds {config.stop.max_benign_change}")
            improved = summary["self_unsafe"] <= state.best_self_unsafe - config.stop.epsilon
            metrics = {
                "round": index, **summary, "benign_change": change, "pairs": len(pairs),
                "pairs_same_seed": int(pairs.same_seed.sum()), "space_rank": edit.space.rank,
                "space_energy": edit.space.energy, "target": config.target, **edit.info,
                "accepted": not guard, "guard": "; ".join(guard), "improved": bool(improved and not guard),
                "seconds": time.perf_counter() - t0,
            }
            if annotate is not None:
                metrics["annotations"] = annotate(after)
            snapshot(index)
            records = pair_records(pairs, prompts, current)
            if directory is not None:
                directory.write_space(index, edit.space.basis)
                directory.write_pairs(index, records)
                directory.write_examples(index, example_rows(pairs, current, after))
                directory.write_metrics(index, metrics)
            rounds.append(metrics)
            state.finished_round = index
            if guard:
                state.stale = config.stop.patience
                if directory is not None:
                    directory.write_state(state)
                emit(Event("rollback", index, message=f"round {index} rejected ({metrics['guard']}); "
                           f"rolling back to round {state.best_round}", metrics=metrics, measurement=after,
                           pairs=records, space_basis=edit.space.basis))
                return finish(f"quality guard at round {index}: {metrics['guard']}")
            if improved:
                state.best_round, state.best_self_unsafe, state.stale = index, summary["self_unsafe"], 0
            else:
                state.stale += 1
            if directory is not None:
                directory.write_state(state)
            emit(Event("round", index, message=f"round {index}: self-judged unsafe {summary['self_unsafe']:.3f}, "
                       f"{len(pairs)} pairs, {metrics['seconds']:.1f} s", metrics=metrics, measurement=after,
                       pairs=records, space_basis=edit.space.basis))
            current = after
    except RunCancelled as exc:
        emit(Event("stopped", state.finished_round, message=str(exc)))
        return finish("", cancelled=True)


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

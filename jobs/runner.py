"""The job runner: takes queued Safe-CB run jobs from the store, runs them with `safecb`, and writes
everything the rounds make back to the store (docs/studio.md). The UI only ever reads the store.

In the app it runs in a background thread (`JobRunner.start`). With PostgreSQL a separate process
can run it instead, on another machine: `python -m jobs worker --db-url postgresql://...`.

A job's progress, one-line message and log are updated as the run goes; cancel is polled between
stages. A crash loses at most the round in flight: finished rounds are in the run directory and the
store, and `Store.fail_stale_jobs` (at app start) marks the job failed with a reason.
"""

from __future__ import annotations

import io
import logging
import os
import socket
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from db import Store
from safecb.engine.config import SafeCBConfig
from safecb.engine.driver import Event, run_safecb
from safecb.engine.measure import KINDS, Measurement, generation_sets
from safecb.engine.mining import Pairs
from safecb.engine.prompts import RoundPrompts, toy_round_prompts
from safecb.engine.redteam import with_found
from safecb.engine.rundir import RunDirectory
from safecb.eval.annotate import OracleAnnotator
from safecb.eval.nudenet import load_oracle
from safecb.eval.protocol import annotator_for
from safecb.eval.toy_oracle import Oracle
from safecb.models.backend import CODEBOOK_PATHS, JanusBackend
from safecb.paths import ORACLE_DIR

log = logging.getLogger(__name__)

RUN_JOB = "run"


@dataclass
class RunnerConfig:
    model_source: str  # model directory the runner loads its own copy of the backend from
    runs_root: Path  # run directories are made under here, one per run: run-0001/, ...
    device: str | None = None  # "cpu" | "cuda" | None (auto)
    oracle_dir: str | None = None  # evaluation-only oracle: a toy-oracle dir, 'toy' or 'nudenet'; None: no oracle figures
    poll_seconds: float = 0.5  # how often an idle runner looks for a queued job
    progress_every_s: float = 0.5  # least time between two progress writes to the store
    worker_id: str = ""  # name in jobs.claimed_by ("" = host:pid)


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def run_directory(runs_root: Path, run_id: int) -> Path:
    return Path(runs_root) / f"run-{run_id:04d}"


def submit_run(store: Store, model_source: str, config: SafeCBConfig, prompts: RoundPrompts | None = None,
               name: str = "", codebook_size: int | None = None) -> tuple[int, int]:
    """Validate, then record a new run with its prompts and queue its job. Returns (run_id, job_id).
    Bad settings raise ValueError before anything is written."""
    prompts = prompts or toy_round_prompts()
    config.validate(codebook_size)
    prompts.validate()
    settings = {"safecb": config.to_dict(), "prompts": prompts.to_dict()}
    run_id = store.create_run(name or f"{config.target} run", model_source, settings)
    store.add_prompts(run_id, [{"text": p.text, "harmful": True, "category": p.category, "safe_rewrite": p.rewrite}
                               for p in prompts.harmful])
    store.add_prompts(run_id, [{"text": b.text, "harmful": False} for b in prompts.benign])
    job_id = store.create_job(RUN_JOB, {"run_id": run_id}, run_id=run_id)
    store.update_job(job_id, message="queued", log=f"queued run {run_id} ({config.target} target, "
                     f"up to {config.stop.max_rounds} rounds)")
    return run_id, job_id


def resume_run(store: Store, run_id: int) -> int:
    """Queue a job that continues a stopped, failed or cancelled run from its last finished round."""
    run = store.get_run(run_id)
    if run is None:
        raise ValueError(f"no run with id {run_id}")
    if any(j.status in ("queued", "running") for j in store.list_jobs(run_id=run_id)):
        raise ValueError(f"run {run_id} already has a queued or running job")
    job_id = store.create_job(RUN_JOB, {"run_id": run_id}, run_id=run_id)
    store.update_job(job_id, message="queued", log=f"queued: resume run {run_id}")
    return job_id


class RoundRecorder:
    """Turns one run's driver events into store rows: job progress, rounds, generations, pairs."""

    def __init__(self, store: Store, job_id: int, run_id: int, config: SafeCBConfig, prompts: RoundPrompts,
                 run_dir: RunDirectory, fingerprint: str, annotator: OracleAnnotator | None, progress_every_s: float):
        self.store, self.job_id, self.run_id = store, job_id, run_id
        self.config, self.prompts, self.run_dir, self.annotator = config, prompts, run_dir, annotator
        self.fingerprint = fingerprint
        self.progress_every_s = progress_every_s
        self.total_rounds = config.stop.max_rounds + 1
        self._progress = 0.0  # what the job shows; never goes backwards
        self._stage = ("", -1)  # (stage name, round) being reported
        self._stages_done = 0  # stages finished in the current round
        self._last_write = 0.0
        self._last_cancel_check = 0.0
        self._cancel = False
        self._generation_ids: dict[int, dict[str, list[int]]] = {}  # round -> kind -> stored ids, in row order

    def should_stop(self) -> bool:
        now = time.monotonic()
        if now - self._last_cancel_check >= self.progress_every_s:
            self._last_cancel_check = now
            self._cancel = self.store.is_cancel_requested(self.job_id)
        return self._cancel

    def __call__(self, event: Event) -> None:
        if event.kind == "stage":
            now = time.monotonic()
            self._advance(event)
            if now - self._last_write < self.progress_every_s and event.fraction < 1.0:
                return
            self._last_write = now
            self.store.update_job(self.job_id, progress=self._progress, message=event.message)
            return
        if event.kind in ("round", "rollback"):
            self.record_round(event)
        self._progress = max(self._progress, min(1.0, (event.round + 1) / self.total_rounds))
        self.store.update_job(self.job_id, message=event.message, log=event.message, progress=self._progress)

    def _advance(self, event: Event) -> None:
        """Progress inside a round from the stages seen so far: each stage moves the bar part of the
        rest of the way (a round's stage count varies with the config), so it only moves forward."""
        if (event.stage, event.round) != self._stage:
            if event.round != self._stage[1]:
                self._stages_done = 0
            elif self._stage[0]:
                self._stages_done += 1
            self._stage = (event.stage, event.round)
        within = 1.0 - 0.8 ** (self._stages_done + min(1.0, max(0.0, event.fraction)))
        overall = (event.round + within) / self.total_rounds
        self._progress = max(self._progress, min(0.999, overall))

    def record_round(self, event: Event) -> None:
        index = event.round
        metrics = dict(event.metrics or {})
        if event.measurement is not None:
            self._generation_ids[index] = self.record_generations(index, event.measurement)
        snapshot = self.run_dir.snapshot(index)
        self.store.add_round(self.run_id, index, metrics, str(snapshot))
        self.store.add_snapshot(self.run_id, index, "codebooks", str(snapshot), self.fingerprint)
        if event.pairs is not None and len(event.pairs):
            self.record_pairs(index, event.pairs)

    def round_prompts(self, index: int) -> RoundPrompts:
        """The prompts round `index` measured: the run's, then those the red teams of rounds 1..index added."""
        if not self.config.redteam.enabled:
            return self.prompts
        return with_found(self.prompts, self.run_dir.found_prompts(index))

    def record_generations(self, index: int, m: Measurement) -> dict[str, list[int]]:
        """Store every generation of round `index`; returns their ids by kind, in row order."""
        scores = self.annotator.last_scores if self.annotator is not None else {}
        texts, _ = generation_sets(self.round_prompts(index), self.config)
        settings = {"cfg_weight": self.config.sampler.cfg_weight, "temperature": self.config.sampler.temperature}
        rows = []
        for kind in KINDS:
            generations, flagged, oracle = m.sets[kind], m.flagged(kind), scores.get(kind)
            seeds = generations.seeds
            for i in range(len(generations)):
                rows.append({
                    "round_index": index, "prompt": texts[kind][i // len(seeds)], "seed": int(seeds[i % len(seeds)]),
                    "image_png": png_bytes(generations.images[i]), "tokens": generations.tokens[i].tolist(),
                    "self_score": float(generations.scores[i]), "flagged": bool(flagged[i]),
                    "oracle_unsafe": None if oracle is None else float(oracle[i]),
                    "settings": {**settings, "kind": kind},
                })
        ids = iter(self.store.add_generations(self.run_id, rows))
        return {kind: [next(ids) for _ in range(len(m.sets[kind]))] for kind in KINDS}

    def stored_generation_ids(self, round_index: int) -> dict[str, list[int | None]]:
        """The ids of a round's generations as the store holds them, by kind in row order (None for a
        row it lacks): a resumed run has not recorded the rounds before the resume itself."""
        found = {}
        offset = 0
        while True:
            page = self.store.list_generations(self.run_id, round_index, limit=500, offset=offset)
            for g in page:
                found[(g.settings.get("kind"), g.prompt, g.seed)] = g.id
            if len(page) < 500:
                break
            offset += 500
        texts, seeds = generation_sets(self.round_prompts(round_index), self.config)
        return {kind: [found.get((kind, texts[kind][i // len(seeds[kind])], seeds[kind][i % len(seeds[kind])]))
                       for i in range(len(texts[kind]) * len(seeds[kind]))] for kind in KINDS}

    def record_pairs(self, index: int, pairs: Pairs) -> None:
        """Pairs of round `index` were mined from round index-1's generations: link them by id."""
        previous = index - 1
        ids = self._generation_ids.get(previous) or self.stored_generation_ids(previous)
        differing = pairs.differing().numpy()
        rows = []
        for i in range(len(pairs)):
            h, s = int(pairs.harmful_rows[i]), int(pairs.safe_rows[i])
            if h >= len(ids["harmful"]) or s >= len(ids["rewrite"]):
                continue  # a prompt this round's red team added: its generations before the edit are not stored
            harmful, safe = ids["harmful"][h], ids["rewrite"][s]
            if harmful is None or safe is None:
                continue  # the previous round's generations were not recorded (a run started elsewhere)
            rows.append({"harmful_generation_id": harmful, "safe_generation_id": safe,
                         "positions": np.flatnonzero(differing[i]).tolist()})
        self.store.add_pairs(self.run_id, index, rows)


class JobRunner:
    """Runs queued jobs one at a time with its own copy of the model."""

    def __init__(self, store: Store, config: RunnerConfig):
        self.store = store
        self.config = config
        self.worker_id = config.worker_id or f"{socket.gethostname()}:{os.getpid()}"
        self._backend: JanusBackend | None = None
        self._oracle: Oracle | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.busy = threading.Event()  # set while a job runs

    @property
    def backend(self) -> JanusBackend:
        if self._backend is None:
            self._backend = JanusBackend.load(self.config.model_source, device=self.config.device)
            self._reference = {name: self._backend.get_codebook(name) for name in CODEBOOK_PATHS}
        return self._backend

    @property
    def oracle(self):
        if self._oracle is None and self.config.oracle_dir:
            self._oracle = load_oracle(self.config.oracle_dir)
        return self._oracle

    def start(self) -> threading.Thread:
        self._thread = threading.Thread(target=self.serve, name="safecb-runner", daemon=True)
        self._thread.start()
        return self._thread

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def serve(self) -> None:
        while not self._stop.is_set():
            try:
                ran = self.run_next()
            except Exception:  # the store went away for a moment: keep serving
                log.exception("job runner: could not claim a job")
                ran = False
            if not ran:
                self._stop.wait(self.config.poll_seconds)

    def run_next(self) -> bool:
        """Claim and run one queued job; False when there was none."""
        job = self.store.claim_next_job(self.worker_id)
        if job is None:
            return False
        self.busy.set()
        try:
            self.execute(job.id, job.run_id)
        finally:
            self.busy.clear()
        return True

    def execute(self, job_id: int, run_id: int) -> None:
        store = self.store
        try:
            run = store.get_run(run_id)
            if run is None:
                raise ValueError(f"job {job_id} names run {run_id}, which does not exist")
            config = SafeCBConfig.from_dict(run.config["safecb"])
            prompts = RoundPrompts.from_dict(run.config["prompts"])
            store.update_run_status(run_id, "running")
            store.update_job(job_id, message="loading the model", log=f"worker {self.worker_id} took the job")
            backend = self.backend
            backend.set_codebooks(self._reference)  # every run starts from the unedited model
            directory = RunDirectory(run_directory(self.config.runs_root, run_id))
            annotator = None
            if self.oracle is not None:
                annotator = annotator_for(self.oracle, prompts, len(config.mining.benign_seeds))
            recorder = RoundRecorder(store, job_id, run_id, config, prompts, directory, backend.fingerprint,
                                     annotator, self.config.progress_every_s)
            result = run_safecb(backend, prompts, config, directory.path, on_event=recorder,
                                annotate=annotator, should_stop=recorder.should_stop)
        except Exception as exc:
            log.exception("job %s failed", job_id)
            reason = f"{type(exc).__name__}: {exc}"
            store.update_job(job_id, message=f"failed: {reason}", log=traceback.format_exc())
            store.finish_job(job_id, "failed", error=reason)
            if store.get_run(run_id) is not None:
                store.update_run_status(run_id, "failed")
            return
        if result.cancelled:
            store.set_run_outcome(run_id, result.best_round if result.rounds else None, "cancelled by a user")
            store.finish_job(job_id, "cancelled", error="cancelled by a user; finished rounds are kept")
            store.update_run_status(run_id, "cancelled")
            return
        store.set_run_outcome(run_id, result.best_round, result.stopped)
        store.update_job(job_id, message=f"done: best round {result.best_round}; {result.stopped}",
                         log=f"stopped: {result.stopped}; best round {result.best_round}; {result.seconds:.0f} s")
        store.finish_job(job_id, "finished")
        store.update_run_status(run_id, "finished")


def default_oracle(model: str, spec: str | None) -> str | None:
    """The oracle a runner evaluates with: `spec` when given, else the toy oracle for a toy-world
    model (one written by `train toy`, which leaves `safecb_toy.json`) and none for other models
    (the toy oracle knows only the toy world)."""
    if spec:
        return spec
    return str(ORACLE_DIR) if (Path(model) / "safecb_toy.json").exists() else None

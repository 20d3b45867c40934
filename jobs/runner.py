"""The job runner: takes queued Safe-CB run jobs from the store, runs them with `safecb`, and writes
everything the rounds make back to the store (docs/studio.md). The UI only ever reads the store.

In the app it runs in a background thread (`JobRunner.start`). With PostgreSQL a separate process
can run it instead, on another machine: `python -m jobs worker --db-url postgresql://...`.

A job's progress, one-line message and log are updated as the run goes; cancel is polled between
stages. Bookkeeping survives faults:
  * the run directory is the source of truth of a run; the store records each finished round in one
    transaction (`Store.record_round`) before the run directory marks it finished, and recording is
    idempotent, so a kill at any instant neither loses nor duplicates a round: the resume redoes the
    round the kill cut short and records it again in place;
  * a running job is leased (`jobs.lease`): its worker renews it from a thread, any worker fails it
    with the reason once it has seen the lease run out on its own monotonic clock, or at once when
    the worker's presence lock on this host is free (its process is gone); a worker whose renewal
    is refused stops;
  * store writes are retried with backoff while the database is briefly away; a job always ends in a
    visible state with its reason;
  * snapshot paths are stored relative to the runs root, so the data can move.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from db import QueueLimits, Store
from db.messages import public_error
from safecb.engine.config import SafeCBConfig
from safecb.engine.driver import Event, RunCancelled, run_safecb
from safecb.engine.measure import KINDS, Measurement, generation_sets
from safecb.engine.mining import Pairs
from safecb.engine.prompts import RoundPrompts, toy_round_prompts
from safecb.engine.redteam import with_found
from safecb.engine.rundir import RunDirectory
from safecb.eval.annotate import OracleAnnotator
from safecb.eval.field_units import write_provenance
from safecb.eval.nudenet import load_oracle
from safecb.eval.protocol import annotator_for
from safecb.eval.toy_oracle import Oracle
from safecb.models.backend import CODEBOOK_PATHS, JanusBackend
from safecb.paths import ORACLE_DIR, SHAPE_JUDGE_DIR
from safecb.prompts.i2p import I2PConfig
from safecb.prompts.rounds import i2p_config_to_dict

from .attack_job import ATTACK_JOB, execute_attack
from .faults import kill_point
from .lease import Lease, LeaseClock, fail_lost_jobs, retry, worker_identity
from .run_prompts import check_i2p, job_prompts, prompt_rows

log = logging.getLogger(__name__)

RUN_JOB = "run"
WHAT_A_LOST_JOB_KEEPS = {RUN_JOB: "finished rounds are kept", ATTACK_JOB: "an attack keeps nothing until it finishes"}


@dataclass
class RunnerConfig:
    model_source: str  # model directory the runner loads its own copy of the backend from
    runs_root: Path  # run directories are made under here, one per run: run-0001/, ...
    device: str | None = None  # "cpu" | "cuda" | None (auto)
    oracle_dir: str | None = None  # evaluation-only oracle: a toy-oracle dir or a name of
    #                                safecb.eval.nudenet.ORACLE_NAMES; None: no oracle figures. Every judge
    #                                of it (a panel: each member) has its verdict stored per generation
    poll_seconds: float = 0.5  # how often an idle runner looks for a queued job (and for lost jobs)
    progress_every_s: float = 0.5  # least time between two progress writes to the store
    worker_id: str = ""  # name in jobs.claimed_by ("": host:pid:start, unique to this process)
    lease_s: float = 30.0  # a running job whose worker has not renewed it for this long is failed
    db_retry_s: float = 60.0  # how long a store write is retried while the database is unreachable


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def run_directory(runs_root: Path, run_id: int) -> Path:
    return Path(runs_root) / f"run-{run_id:04d}"


def submit_run(store: Store, model_source: str, config: SafeCBConfig, prompts: RoundPrompts | None = None,
               name: str = "", codebook_size: int | None = None, i2p: I2PConfig | None = None,
               requested_by: str | None = None, limits: QueueLimits | None = None) -> tuple[int, int]:
    """Validate, then record a new run with its prompts and queue its job for `requested_by`.
    Returns (run_id, job_id). `prompts` (default: the toy world's) are stored now; an `i2p`
    selection instead is stored as such and its job builds the prompt set (jobs/run_prompts.py).
    Bad settings, and a queue past `limits` (QueueFull), raise ValueError with nothing kept."""
    if prompts is not None and i2p is not None:
        raise ValueError("give a prompt set or an I2P selection, not both")
    config.validate(codebook_size)
    if i2p is not None:
        n_prompts = check_i2p(i2p)
        settings = {"safecb": config.to_dict(), "i2p": i2p_config_to_dict(i2p)}
        what = f"{n_prompts} I2P prompts"
    else:
        prompts = prompts or toy_round_prompts()
        prompts.validate()
        settings = {"safecb": config.to_dict(), "prompts": prompts.to_dict()}
        what = f"{len(prompts.harmful)} harmful prompts"
    if limits is not None:
        store.queue_room(requested_by, limits)
    run_id = store.create_run(name or f"{config.target} run", model_source, settings)
    try:
        if prompts is not None:
            store.add_prompts(run_id, prompt_rows(prompts))
        job_id = store.create_job(RUN_JOB, {"run_id": run_id}, run_id=run_id, requested_by=requested_by, limits=limits)
    except BaseException:  # a run without its job would stay "created" for good
        store.delete_run(run_id)
        raise
    store.update_job(job_id, message="queued", log=f"queued run {run_id} ({config.target} target, "
                     f"up to {config.stop.max_rounds} rounds, {what})")
    return run_id, job_id


def resume_run(store: Store, run_id: int, requested_by: str | None = None, limits: QueueLimits | None = None) -> int:
    """Queue a job for `requested_by` that continues a stopped, failed or cancelled run from its
    last finished round. ValueError when the run does not exist, already has a live job (decided by
    the database, so simultaneous resumes queue one job), or (QueueFull) the queue is past `limits`."""
    if store.get_run(run_id) is None:
        raise ValueError(f"no run with id {run_id}")
    job_id = store.create_job(RUN_JOB, {"run_id": run_id}, run_id=run_id, requested_by=requested_by, limits=limits)
    store.update_job(job_id, message="queued", log=f"queued: resume run {run_id}")
    return job_id


class RoundRecorder:
    """Turns one run's driver events into store rows: job progress, and each finished round with its
    generations, pairs and snapshot in one transaction."""

    def __init__(self, store: Store, job_id: int, run_id: int, config: SafeCBConfig, prompts: RoundPrompts,
                 run_dir: RunDirectory, runs_root: Path, fingerprint: str, annotator: OracleAnnotator | None,
                 progress_every_s: float, lease: Lease | None = None, db_retry_s: float = 60.0):
        self.store, self.job_id, self.run_id = store, job_id, run_id
        self.config, self.prompts, self.run_dir, self.annotator = config, prompts, run_dir, annotator
        self.runs_root = Path(runs_root)
        self.fingerprint = fingerprint
        self.progress_every_s = progress_every_s
        self.lease, self.db_retry_s = lease, db_retry_s
        self.total_rounds = config.stop.max_rounds + 1
        self._progress = 0.0  # what the job shows; never goes backwards
        self._stage = ("", -1)  # (stage name, round) being reported
        self._stages_done = 0  # stages finished in the current round
        self._last_write = 0.0
        self._last_cancel_check = 0.0
        self._cancel = False

    def should_stop(self) -> bool:
        if self.lease is not None and self.lease.lost.is_set():
            raise RunCancelled("this worker lost the job's lease (another worker failed it); stopping")
        now = time.monotonic()
        if now - self._last_cancel_check >= self.progress_every_s:
            self._last_cancel_check = now
            try:
                self._cancel = self.store.is_cancel_requested(self.job_id)
            except Exception:  # the database is away for a moment: ask again at the next stage
                log.warning("job %s: could not read its cancel flag", self.job_id)
        return self._cancel

    def _write(self, what: str, action) -> None:
        retry(action, what, self.db_retry_s, log.warning)

    def __call__(self, event: Event) -> None:
        if event.kind == "stage":
            kill_point("stage")
            now = time.monotonic()
            self._advance(event)
            if now - self._last_write < self.progress_every_s and event.fraction < 1.0:
                return
            self._last_write = now
            try:  # progress is not worth waiting for: the next stage writes it again
                self.store.update_job(self.job_id, progress=self._progress, message=event.message)
            except Exception:
                log.warning("job %s: could not write its progress", self.job_id)
            return
        if event.kind in ("round", "rollback"):
            kill_point(f"before_record_{event.round}")
            self._write(f"recording round {event.round}", lambda: self.record_round(event))
            kill_point(f"after_record_{event.round}")
        self._progress = max(self._progress, min(1.0, (event.round + 1) / self.total_rounds))
        self._write("updating the job", lambda: self.store.update_job(
            self.job_id, message=event.message, log=event.message, progress=self._progress))

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

    def snapshot_path(self, index: int) -> str:
        """Where round `index`'s snapshot lies, relative to the runs root (the form the store keeps)."""
        return self.run_dir.snapshot(index).relative_to(self.runs_root).as_posix()

    def record_round(self, event: Event) -> None:
        index = event.round
        generations = self.generation_rows(index, event.measurement) if event.measurement is not None else []
        pairs = self.pair_keys(index, event.pairs) if event.pairs is not None and len(event.pairs) else []
        self.store.record_round(self.run_id, index, dict(event.metrics or {}), self.snapshot_path(index),
                                self.fingerprint, generations, pairs)

    def round_prompts(self, index: int) -> RoundPrompts:
        """The prompts round `index` measured: the run's, then those the red teams of rounds 1..index added."""
        if not self.config.redteam.enabled:
            return self.prompts
        return with_found(self.prompts, self.run_dir.found_prompts(index))

    def generation_rows(self, index: int, m: Measurement) -> list[dict]:
        """Every generation of round `index` as a store row with its kind, and every judge's score
        and verdict (by that judge's own rule) on it, the primary judge first."""
        annotator = self.annotator
        judged = annotator.last_verdicts if annotator is not None else {}
        if judged and annotator.primary in judged:  # the primary first: its verdict is the generation's
            judged = {annotator.primary: judged[annotator.primary], **judged}
        texts, _ = generation_sets(self.round_prompts(index), self.config)
        settings = {"cfg_weight": self.config.sampler.cfg_weight, "temperature": self.config.sampler.temperature}
        rows = []
        for kind in KINDS:
            generations, flagged = m.sets[kind], m.flagged(kind)
            verdicts = {name: by_kind[kind] for name, by_kind in judged.items() if kind in by_kind}
            seeds = generations.seeds
            for i in range(len(generations)):
                rows.append({
                    "kind": kind, "prompt": texts[kind][i // len(seeds)], "seed": int(seeds[i % len(seeds)]),
                    "image_png": png_bytes(generations.images[i]), "tokens": generations.tokens[i].tolist(),
                    "self_score": float(generations.scores[i]), "flagged": bool(flagged[i]),
                    "oracle_unsafe": None, "settings": settings,
                    "verdicts": {name: {"score": float(scores[i]), "unsafe": bool(unsafe[i])}
                                 for name, (scores, unsafe) in verdicts.items()},
                })
        return rows

    def pair_keys(self, index: int, pairs: Pairs) -> list[dict]:
        """Round `index`'s pairs, each naming its two generations of round index − 1 by (prompt, seed).
        Pairs were mined from a measurement laid out over round `index`'s prompts; one from a prompt
        this round's red team added has no stored generation before the edit, and the store skips it."""
        texts, seeds = generation_sets(self.round_prompts(index), self.config)
        row_seeds, differing = seeds["harmful"], pairs.differing().numpy()  # rewrites share the layout

        def key(kind: str, row: int) -> tuple[str, int]:
            return texts[kind][row // len(row_seeds)], int(row_seeds[row % len(row_seeds)])

        return [{"harmful": key("harmful", int(pairs.harmful_rows[i])), "safe": key("rewrite", int(pairs.safe_rows[i])),
                 "positions": np.flatnonzero(differing[i]).tolist()} for i in range(len(pairs))]


class JobRunner:
    """Runs queued jobs one at a time with its own copy of the model; between jobs it fails the jobs
    no live worker holds (`jobs.lease.fail_lost_jobs`)."""

    def __init__(self, store: Store, config: RunnerConfig):
        self.store = store
        self.config = config
        self.worker_id = config.worker_id or worker_identity()
        self.lease_clock = LeaseClock()  # when this runner saw each running job's heartbeat change
        self._sweep_lock = threading.Lock()  # the serve loop and the watch thread both sweep
        self._backend: JanusBackend | None = None
        self._oracle: Oracle | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.busy = threading.Event()  # set while a job runs
        self._store_down_since: float | None = None

    @property
    def backend(self) -> JanusBackend:
        if self._backend is None:
            self._backend = JanusBackend.load(self.config.model_source, device=self.config.device)
            self._reference = {name: self._backend.get_codebook(name) for name in CODEBOOK_PATHS}
        return self._backend

    @property
    def reference(self) -> dict:
        """The unedited model's codebooks (every job starts from them)."""
        self.backend  # loads the model, and with it the reference, on first use
        return self._reference

    @property
    def oracle(self):
        if self._oracle is None and self.config.oracle_dir:
            self._oracle = load_oracle(self.config.oracle_dir)
        return self._oracle

    def start(self) -> threading.Thread:
        """Serve jobs from a background thread, and watch for lost jobs from another (also while a
        job runs, so another worker's dead job is failed within one lease)."""
        self._thread = threading.Thread(target=self.serve, name="safecb-runner", daemon=True)
        self._thread.start()
        threading.Thread(target=self.watch, name="safecb-runner-watch", daemon=True).start()
        return self._thread

    def watch(self) -> None:
        """Fail lost jobs every lease_s / 3 seconds until stopped."""
        while not self._stop.wait(self.config.lease_s / 3.0):
            try:
                self.fail_lost_jobs()
            except Exception:  # the store is away: the serve loop says so; try again next time
                pass

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def serve(self) -> None:
        while not self._stop.is_set():
            try:
                ran = self.run_next()
                if self._store_down_since is not None:
                    log.warning("job runner: the store is reachable again")
                    self._store_down_since = None
            except Exception as exc:  # the store went away for a moment: say so once, keep serving
                if self._store_down_since is None:
                    self._store_down_since = time.monotonic()
                    log.warning("job runner: the store is unreachable (%s); retrying every %.1f s",
                                str(exc).splitlines()[0] if str(exc) else type(exc).__name__, self.config.poll_seconds)
                ran = False
            if not ran:
                self._stop.wait(self.config.poll_seconds)

    def fail_lost_jobs(self) -> list[int]:
        with self._sweep_lock:
            failed = fail_lost_jobs(self.store, self.config.lease_s, self.lease_clock, WHAT_A_LOST_JOB_KEEPS)
        if failed:
            log.warning("job runner: failed job(s) %s: no live worker held them", failed)
        return failed

    def run_next(self) -> bool:
        """Fail lost jobs, then claim and run one queued job; False when there was none."""
        self.fail_lost_jobs()
        job = self.store.claim_next_job(self.worker_id, self.config.lease_s)
        if job is None:
            return False
        self.busy.set()
        try:
            if job.kind == ATTACK_JOB:
                run_dir = run_directory(self.config.runs_root, job.run_id) if job.run_id is not None else None
                execute_attack(self, job, run_dir)
            elif job.kind == RUN_JOB:
                self.execute(job.id, job.run_id)
            else:
                reason = f"unknown job kind {job.kind!r}; this worker runs {RUN_JOB!r} and {ATTACK_JOB!r} jobs"
                retry(lambda: self.store.finish_job(job.id, "failed", error=reason), f"failing job {job.id}",
                      self.config.db_retry_s, log.warning)
        finally:
            self.busy.clear()
        return True

    def _end(self, job_id: int, run_id: int, status: str, reason: str | None, outcome=None) -> None:
        """Record how the job ended, retrying while the database is away. If it stays away longer
        than `db_retry_s`, the job's lease runs out and the next sweep of any worker fails it."""
        def write() -> None:
            if outcome is not None:
                self.store.set_run_outcome(run_id, *outcome)
            if self.store.finish_job(job_id, status, error=reason) and self.store.get_run(run_id) is not None:
                self.store.update_run_status(run_id, status)

        try:
            retry(write, f"ending job {job_id} as {status}", self.config.db_retry_s, log.warning)
        except Exception:
            log.exception("job %s: could not record that it %s; its lease will run out", job_id, status)

    def _rewrite_progress(self, job_id: int, lease: Lease):
        """After each batch of the model's rewrites: the job's message, and a stop (RunCancelled)
        once a user asked to cancel or the lease was lost."""
        def after_batch(answered: int, total: int) -> None:
            try:
                cancel = self.store.is_cancel_requested(job_id)
                self.store.update_job(job_id, message=f"proposing safe rewrites: {answered} of {total} prompts")
            except Exception:  # the database is away for a moment: as RoundRecorder.should_stop, ask again later
                log.warning("job %s: could not read its cancel flag or write its progress", job_id)
                cancel = False
            if cancel or lease.lost.is_set():
                raise RunCancelled("stopped while the I2P prompt set was being built")
        return after_batch

    def execute(self, job_id: int, run_id: int) -> None:
        store, cfg = self.store, self.config
        lease = Lease(store, job_id, self.worker_id, cfg.lease_s)
        try:
            with lease:
                run = store.get_run(run_id)
                if run is None:
                    raise ValueError(f"job {job_id} names run {run_id}, which does not exist")
                config = SafeCBConfig.from_dict(run.config["safecb"])
                store.update_run_status(run_id, "running")
                store.update_job(job_id, message="loading the model", log=f"worker {self.worker_id} took the job")
                backend = self.backend
                backend.set_codebooks(self.reference)  # every run starts from the unedited model
                directory = RunDirectory(run_directory(cfg.runs_root, run_id))
                prompts = job_prompts(store, run, backend, directory.path,
                                      lambda line: store.update_job(job_id, message=line, log=line),
                                      self._rewrite_progress(job_id, lease))
                annotator = None
                real_oracle = hasattr(self.oracle, "members")
                if self.oracle is not None and (real_oracle or "i2p" not in run.config):  # the toy oracle knows no I2P
                    annotator = annotator_for(self.oracle, prompts, len(config.mining.benign_seeds), backend,
                                              self.reference["decoder"])
                    if real_oracle:  # real-image oracles: their provenance beside the rounds
                        write_provenance(directory.path, self.oracle, config, self.config.model_source, prompts)
                recorder = RoundRecorder(store, job_id, run_id, config, prompts, directory, cfg.runs_root,
                                         backend.fingerprint, annotator, cfg.progress_every_s, lease, cfg.db_retry_s)
                result = run_safecb(backend, prompts, config, directory.path, on_event=recorder,
                                    annotate=annotator, should_stop=recorder.should_stop)
        except RunCancelled:  # only the I2P prompt set's build raises it here; the driver handles its own
            if not lease.lost.is_set():
                self._end(job_id, run_id, "cancelled", "cancelled by a user while the I2P prompt set was being "
                          "built; nothing of it was kept", (None, "cancelled by a user"))
            return
        except Exception as exc:
            log.exception("job %s failed", job_id)  # the traceback goes to the server log only
            reason = public_error(exc)  # users see no server path, database endpoint or SQL
            try:
                store.update_job(job_id, message=f"failed: {reason}", log=f"failed: {reason}")
            except Exception:
                log.warning("job %s: could not write its failure to the log", job_id)
            self._end(job_id, run_id, "failed", reason)
            return
        if lease.lost.is_set():
            log.warning("job %s: stopped after losing its lease; another worker recorded why", job_id)
            return
        if result.cancelled:
            self._end(job_id, run_id, "cancelled", "cancelled by a user; finished rounds are kept",
                      (result.best_round if result.rounds else None, "cancelled by a user"))
            return
        try:
            store.update_job(job_id, message=f"done: best round {result.best_round}; {result.stopped}",
                             log=f"stopped: {result.stopped}; best round {result.best_round}; {result.seconds:.0f} s")
        except Exception:
            log.warning("job %s: could not write its last message", job_id)
        self._end(job_id, run_id, "finished", None, (result.best_round, result.stopped))


def is_toy_model(model: str) -> bool:
    """A toy-world model: one written by `train toy`, which leaves `safecb_toy.json`."""
    return (Path(model) / "safecb_toy.json").exists()


def default_oracle(model: str, spec: str | None) -> str | None:
    """The oracle a runner evaluates with: `spec` when given, else for a toy-world model both toy
    judges ("toys", the oracle primary; the oracle alone while the second judge is not trained) and
    none for other models (the toy judges know only the toy world)."""
    if spec:
        return spec
    if not is_toy_model(model):
        return None
    return "toys" if (SHAPE_JUDGE_DIR / "oracle.json").is_file() else str(ORACLE_DIR)
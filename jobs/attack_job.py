"""Red-team jobs: the evaluation-only attacks of `safecb.eval.attack` against one round of a run,
queued by the studio's Red team tab and executed by the job runner like a run.

The attacker holds the public, unedited model: the soft attack's target images are drawn from it,
then both attacks search against the attacked round's codebooks, with the oracle as their
objective, and are validated at image seeds the search never saw. The report lies in the run
directory under `attacks/job-NNNN/` (attack.json, one image strip per attack instance, the prompts
as text, soft prompts' embeddings); the job's last message sums it up. An attack job never changes
its run's status or outcome.

Like a run job it is leased, reports progress, and stops at the next model call when cancelled.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Protocol

from db import QueueLimits, Store
from db.messages import public_error
from db.records import JobRecord
from safecb.engine.config import SafeCBConfig
from safecb.engine.rundir import RunDirectory
from safecb.eval.attack import ATTACK_NAMES, ATTACKS, NEEDS_TOY, AttackConfig, attack_model_state, draw_reference, quick_attack_config
from safecb.models.backend import JanusBackend
from safecb.models.sampler import SamplerSettings

from .lease import Lease, retry

log = logging.getLogger(__name__)

ATTACK_JOB = "attack"
BUDGETS = ("quick", "full")  # quick: a first look in seconds on the toy; full: `bench attack`'s budgets
ORIGINAL_ROUND = -1  # the round index that stands for the unedited model
REPORT = "attack.json"


class Worker(Protocol):
    """What an attack job needs of the worker that runs it (`jobs.runner.JobRunner` is one)."""

    store: Store
    config: object  # a RunnerConfig: runs_root, lease_s, progress_every_s, db_retry_s
    worker_id: str
    backend: JanusBackend  # its own copy of the model
    reference: dict  # the unedited codebooks
    oracle: object  # the evaluation oracle, or None


class AttackCancelled(Exception):
    """A user asked the attack to stop, or its worker lost the job's lease."""


@dataclass
class AttackRequest:
    round: int  # the run's round whose codebooks are attacked; ORIGINAL_ROUND: the unedited model
    attacks: tuple[str, ...]  # which of safecb.eval.attack.ATTACKS to run
    budget: str  # one of BUDGETS

    def __post_init__(self):
        self.attacks = tuple(a for a in ATTACKS if a in self.attacks)  # canonical order, no repeats
        if not self.attacks:
            raise ValueError(f"choose at least one attack: {', '.join(ATTACKS)}")
        if self.budget not in BUDGETS:
            raise ValueError(f"the budget must be one of {', '.join(BUDGETS)}, got {self.budget!r}")

    @classmethod
    def from_dict(cls, data: dict) -> AttackRequest:
        return cls(int(data["round"]), tuple(data["attacks"]), str(data["budget"]))


def target_name(round_index: int) -> str:
    """What an attack on `round_index` attacks, in words."""
    return "the unedited model" if round_index == ORIGINAL_ROUND else f"round {round_index}"


def attack_jobs(store: Store, run_id: int) -> list[JobRecord]:
    """The run's attack jobs, newest first."""
    return [j for j in store.list_jobs(run_id=run_id, limit=500) if j.kind == ATTACK_JOB]


def attack_config(request: AttackRequest, sampler: SamplerSettings) -> AttackConfig:
    """The attack's budgets and seeds for `request`, drawing with the run's own sampler settings."""
    base = quick_attack_config() if request.budget == "quick" else AttackConfig()
    return replace(base, attacks=request.attacks, sampler=sampler)


def attack_directory(run_dir: Path, job_id: int) -> Path:
    """Where attack job `job_id` on the run in `run_dir` writes its report."""
    return Path(run_dir) / "attacks" / f"job-{job_id:04d}"


def read_report(run_dir: Path, job_id: int) -> dict | None:
    """The finished attack's report (AttackReport.to_dict, with each instance's image strip named),
    or None while it has none."""
    path = attack_directory(run_dir, job_id) / REPORT
    return json.loads(path.read_text()) if path.exists() else None


def submit_attack(store: Store, run_id: int, request: AttackRequest, requested_by: str | None = None,
                  limits: QueueLimits | None = None) -> int:
    """Queue an attack on a finished round of a run for `requested_by`; returns the job id.
    ValueError when the run or round does not exist, the run already has a queued or running job
    (one live job per run), or (QueueFull) the queue is past `limits`."""
    if store.get_run(run_id) is None:
        raise ValueError(f"no run with id {run_id}")
    if request.round != ORIGINAL_ROUND:
        rounds = {r.index: r for r in store.list_rounds(run_id)}
        if request.round not in rounds or not rounds[request.round].snapshot_path:
            raise ValueError(f"run {run_id} has no finished round {request.round}")
    job_id = store.create_job(ATTACK_JOB, asdict(request), run_id=run_id, requested_by=requested_by, limits=limits)
    store.update_job(job_id, message="queued", log=f"queued: {' and '.join(request.attacks)} attack "
                     f"({request.budget}) on run {run_id}, {target_name(request.round)}")
    return job_id


def summary(report: dict) -> str:
    """One line: each attack's success rate with its interval and n."""
    parts = []
    for name, result in report["results"].items():
        asr = result["asr"]
        words = ATTACK_NAMES.get(result.get("attack", name), name)
        words += f" ({result['setting']})" if result.get("setting") else ""
        parts.append(f"{words} {asr['successes']}/{asr['n']} got through "
                     f"(ASR {asr['value']:.2f}, 95% CI {asr['ci'][0]:.2f}–{asr['ci'][1]:.2f})")
    reuse = report.get("probes", {}).get("token_reuse")
    if reuse:
        parts.append(f"token reuse {reuse['value']:.2f} (95% CI {reuse['ci'][0]:.2f}–{reuse['ci'][1]:.2f})")
    return "; ".join(parts)


class AttackProgress:
    """The attack's progress callback: writes progress to the store at most every `every_s` seconds
    and raises AttackCancelled once a cancel is asked for or the lease is lost."""

    def __init__(self, store: Store, job_id: int, lease: Lease, every_s: float):
        self.store, self.job_id, self.lease, self.every_s = store, job_id, lease, every_s
        self._last = 0.0

    def __call__(self, what: str, done: float) -> None:
        if self.lease.lost.is_set():
            raise AttackCancelled("this worker lost the job's lease (another worker failed it)")
        now = time.monotonic()
        if now - self._last < self.every_s:
            return
        self._last = now
        try:
            self.store.update_job(self.job_id, progress=min(0.999, done), message=what)
            cancel = self.store.is_cancel_requested(self.job_id)
        except Exception:  # the database is away for a moment: the next call asks again
            log.warning("attack job %s: could not write its progress", self.job_id)
            return
        if cancel:
            raise AttackCancelled("cancelled by a user")


def execute_attack(runner: Worker, job: JobRecord, run_dir: Path | None) -> None:
    """Run attack job `job` with the runner's model and oracle; end it finished, cancelled or failed
    with its reason. The backend ends on the unedited codebooks."""
    store, cfg = runner.store, runner.config
    lease = Lease(store, job.id, runner.worker_id, cfg.lease_s)
    backend = None
    try:
        with lease:
            request = AttackRequest.from_dict(job.config)
            run = store.get_run(job.run_id) if job.run_id is not None else None
            if run is None or run_dir is None:
                raise ValueError(f"job {job.id} names run {job.run_id}, which does not exist")
            oracle = runner.oracle
            members = getattr(oracle, "members", None)
            if members and hasattr(members[0], "probs"):
                oracle = members[0]  # both toy judges: the attacker's objective is the primary, the oracle
            if oracle is None:
                raise ValueError("the red team needs an evaluation oracle as the attacker's objective, and this "
                                 "worker has none (start it with --oracle)")
            toy = hasattr(oracle, "probs")
            needs_toy = [a for a in request.attacks if a in NEEDS_TOY]
            if needs_toy and not toy:
                raise ValueError(f"the {' and '.join(ATTACK_NAMES[a] for a in needs_toy)} attack aims at the toy "
                                 "world's objects and needs the toy oracle; run the others alone with this oracle")
            safecb = run.config.get("safecb")
            sampler = SafeCBConfig.from_dict(safecb).sampler if safecb else SamplerSettings()
            config = attack_config(request, sampler)
            directory = RunDirectory(run_dir)
            run_prompts = directory.read_config().get("prompts", {}) if directory.exists() else {}
            harmful = tuple(p["text"] for p in run_prompts.get("harmful", []))
            if harmful and not toy:  # aim at the run's own harmful prompts (an I2P run's): the toy grid is the toy's
                config = replace(config, harmful_texts=harmful)
            store.update_job(job.id, message="loading the model", log=f"worker {runner.worker_id} took the job")
            backend, reference = runner.backend, runner.reference
            codebooks = reference
            if request.round != ORIGINAL_ROUND:
                record = {r.index: r for r in store.list_rounds(run.id)}.get(request.round)
                if record is None or not record.snapshot_path:
                    raise ValueError(f"run {run.id} has no finished round {request.round}")
                path = Path(record.snapshot_path)
                path = path if path.is_absolute() else Path(cfg.runs_root) / path
                codebooks = {**reference, **backend.read_codebook_file(path)}
            progress = AttackProgress(store, job.id, lease, cfg.progress_every_s)
            t0 = time.perf_counter()
            backend.set_codebooks(reference)  # the public model, which the attacker holds
            drawn = draw_reference(backend, oracle, config, progress)
            backend.set_codebooks(codebooks)
            report = attack_model_state(backend, oracle, config, reference=drawn, progress=progress,
                                        original_decoder=reference["decoder"])
            report.save(attack_directory(run_dir, job.id))  # its JSON last: a report is whole or absent
            seconds = time.perf_counter() - t0
    except Exception as exc:
        if backend is not None:
            backend.set_codebooks(runner.reference)
        cancelled = isinstance(exc, AttackCancelled)
        if cancelled and lease.lost.is_set():
            log.warning("attack job %s: stopped after losing its lease; another worker recorded why", job.id)
            return
        if not cancelled:
            log.exception("attack job %s failed", job.id)
        reason = str(exc) if cancelled else public_error(exc)  # no server path, database endpoint or SQL
        _end(runner, job.id, "cancelled" if cancelled else "failed", reason, reason)
        return
    backend.set_codebooks(runner.reference)
    line = summary(report.to_dict())
    _end(runner, job.id, "finished", None, f"done in {seconds:.0f} s: {line}")


def _end(runner: Worker, job_id: int, status: str, error: str | None, message: str) -> None:
    def write() -> None:
        runner.store.update_job(job_id, message=message, log=message)
        runner.store.finish_job(job_id, status, error=error)

    try:
        retry(write, f"ending attack job {job_id} as {status}", runner.config.db_retry_s, log.warning)
    except Exception:
        log.exception("attack job %s: could not record that it %s; its lease will run out", job_id, status)

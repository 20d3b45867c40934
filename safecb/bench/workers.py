"""A bench's methods shared among spawned processes (`bench safety`, `bench attack`): the toy model's
matrices are too small for one process to keep two cores busy, so two one-thread processes do
nearly twice the work of one two-thread process (docs/experiments/2026-12-07-attack-bench-workers.md).
Each bench decides which methods go together and merges the reports; this runs the shares."""

from __future__ import annotations

import copy
import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Callable

import torch


def run_shares(run: Callable[..., dict], cfg, shares: list[tuple[str, ...]], log) -> tuple[list[dict], int]:
    """`run(job, log=...)` on one copy of `cfg` per share (its `methods` the share, its `workers` 1), each
    in its own spawned process with an equal part of this process's threads. `run` and `cfg` must be
    picklable. Returns the reports in share order and the threads each process had."""
    threads = max(1, torch.get_num_threads() // len(shares))
    log(f"{len(shares)} processes of {threads} thread(s): " + "; ".join("+".join(share) for share in shares))
    jobs = []
    for share in shares:
        job = copy.copy(cfg)  # not `replace`: that would run __post_init__ and undo changes made after it
        job.methods, job.workers = share, 1
        jobs.append(job)
    with ProcessPoolExecutor(max_workers=len(jobs), mp_context=get_context("spawn")) as pool:
        reports = list(pool.map(_run_one, [run] * len(jobs), jobs, [threads] * len(jobs)))
    return reports, threads


def _run_one(run: Callable[..., dict], cfg, threads: int) -> dict:
    """One worker process: `run` on its share, its log lines on stderr with its methods in front."""
    torch.set_num_threads(threads)
    label = "+".join(name for name in cfg.methods if name != "none") or "none"
    return run(cfg, log=lambda line: print(f"[{label}] {line}", file=sys.stderr, flush=True))

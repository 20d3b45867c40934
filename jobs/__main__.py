"""`python -m jobs worker`: a Safe-CB job runner in a process of its own, for a store shared over
PostgreSQL (several machines may each run one). It imports the library and the store, never the UI.

    python -m jobs worker --db-url postgresql://... [--model DIR] [--runs-dir DIR] [--once]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import threading
from pathlib import Path

# OpenMP threads sleep instead of spinning while they wait (docs/studio.md, "Threads"); before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from db import Store  # noqa: E402
from safecb.cli import whole_number_at_least  # noqa: E402
from safecb.io import unwritable_reason  # noqa: E402
from safecb.paths import TOY_MODEL_DIR  # noqa: E402

from .runner import JobRunner, RunnerConfig, default_oracle  # noqa: E402

USAGE = "usage: python -m jobs worker [options]   (add --help for its options)"
MAX_LEASE_S = 86_400.0  # one day: a longer lease would leave a dead worker's job "running" for days


def lease_seconds(text: str) -> float:
    """argparse type of --lease: a finite number of seconds above 0 and at most a day."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_LEASE_S):
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0 and at most {MAX_LEASE_S:.0f} "
                                         f"(a day), got {text!r}")
    return seconds


def setup_problem(runner: JobRunner) -> str:
    """Why this worker could run no job ("" when it can): its runs directory, oracle and model are
    checked, and the oracle and model loaded, before it claims anything (a misconfigured worker on
    a shared queue would otherwise take other workers' jobs and fail each one)."""
    from safecb.models.backend import ModelLoadError

    reason = unwritable_reason(runner.config.runs_root)
    if reason:
        return f"--runs-dir {runner.config.runs_root}: cannot create or write there ({reason})"
    try:
        runner.oracle  # loads it (None with --no-oracle)
    except (ValueError, OSError, ImportError) as exc:
        return f"--oracle {runner.config.oracle_dir}: {exc}"
    try:
        runner.backend  # loads the model
    except (ModelLoadError, ValueError, OSError) as exc:
        return f"--model {runner.config.model_source}: {exc}"
    return ""


def worker_main(argv: list[str] | None = None) -> int:
    """`python -m jobs worker`: a runner process of its own, for a store shared over PostgreSQL."""
    parser = argparse.ArgumentParser(prog="python -m jobs worker",
                                     description="claim and run Safe-CB jobs from a shared store")
    parser.add_argument("--db-url", default=None, help="store URL (default: $SAFECB_DB_URL, else the SQLite file)")
    parser.add_argument("--db-schema", default=None, help="PostgreSQL schema to use (default: the user's default)")
    parser.add_argument("--model", default=str(TOY_MODEL_DIR), help="model directory (Hugging Face layout)")
    parser.add_argument("--runs-dir", default="artifacts/runs", help="where run directories are written")
    parser.add_argument("--device", default=None, choices=["cpu", "cuda"], help="default: cuda when available")
    parser.add_argument("--threads", type=whole_number_at_least(0, " (torch's default)"), default=0,
                        help="torch CPU threads (0: torch's default)")
    parser.add_argument("--no-oracle", action="store_true", help="skip the oracle's evaluation figures")
    parser.add_argument("--oracle", default=None,
                        help="evaluation-only oracle: 'toys' (both toy judges), 'toy', 'toy-shape', 'nudenet', 'open_nsfw', "
                             "'real' (both) or a toy-oracle directory (default: 'toys' for the toy model, none for "
                             "other models)")
    parser.add_argument("--once", action="store_true", help="run at most one job, then exit")
    parser.add_argument("--lease", type=lease_seconds, default=30.0,
                        help="seconds a running job's lease lasts unrenewed before any worker fails it "
                             "(default 30, at most a day)")
    args = parser.parse_args(argv)
    import torch

    from db import StoreError

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        store = Store.open(args.db_url, schema=args.db_schema)
    except (StoreError, ValueError) as exc:
        print(f"error: {exc}", flush=True)
        return 2
    from safecb.models.backend import resolve_device

    try:
        resolve_device(args.device)
    except ValueError as exc:
        print(f"error: --device: {exc}", flush=True)
        return 2
    runner = JobRunner(store, RunnerConfig(args.model, Path(args.runs_dir), args.device,
                                           None if args.no_oracle else default_oracle(args.model, args.oracle),
                                           lease_s=args.lease))
    problem = setup_problem(runner)
    if problem:
        print(f"error: {problem}", flush=True)
        return 1
    failed = runner.fail_lost_jobs()
    if failed:
        print(f"marked job(s) {failed} failed: no live worker held them", flush=True)
    print(f"worker {runner.worker_id} serving {store.masked_url}", flush=True)
    if args.once:
        threading.Thread(target=runner.watch, name="safecb-runner-watch", daemon=True).start()
        runner.run_next()
        return 0
    threading.Thread(target=runner.watch, name="safecb-runner-watch", daemon=True).start()
    try:
        runner.serve()
    except KeyboardInterrupt:
        pass
    return 0


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip() if argv else USAGE)
        return 0 if argv else 2
    if argv[0] != "worker":
        print(f"error: unknown command {argv[0]!r}\n{USAGE}", file=sys.stderr)
        return 2
    return worker_main(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

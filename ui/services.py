"""What the tabs talk to, bundled so `build_demo` takes one argument and tests can build their own.

The tabs read and write records only through `store` (db/), run files only through `artifacts(run_id)`
(a `RunDirectory`), and call `safecb` entry points; background work goes through jobs in the store,
which the runner (jobs/runner.py) or a separate worker executes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import torch

from db import QueueLimits, Store
from jobs.runner import JobRunner, run_directory
from safecb.engine.rundir import RunDirectory
from safecb.models.backend import CODEBOOK_PATHS, JanusBackend

ORIGINAL = "original"  # the label of the unedited model in round pickers


@dataclass
class Services:
    backend: JanusBackend  # the model the interactive tabs use; codebooks are swapped per request under `lock`
    store: Store  # runs, rounds, generations, labels, pairs, jobs
    runs_root: Path  # where run directories live (the runner writes them)
    runner: JobRunner | None = None  # in-process runner; None when a separate worker serves the store
    i2p_path: Path | None = None  # the I2P CSV runs may draw their harmful prompts from; None: toy world only
    queue_limits: QueueLimits = QueueLimits()  # how many jobs one client, and everyone, may have waiting
    lock: threading.Lock = field(default_factory=threading.Lock)  # one request at a time on `backend`
    reference: dict[str, torch.Tensor] = field(default_factory=dict)  # the unedited codebooks
    snapshot_cache: int = 6  # snapshots kept in memory, most recently used first (≈134 MB each on Janus-Pro-1B)
    _snapshots: OrderedDict[Path, dict[str, torch.Tensor]] = field(default_factory=OrderedDict)  # path -> codebooks

    def __post_init__(self):
        if not self.reference:
            self.reference = {name: self.backend.get_codebook(name) for name in CODEBOOK_PATHS}

    def artifacts(self, run_id: int) -> RunDirectory:
        """The files a run wrote (snapshots, Harmful Space bases, examples images); they are on this
        machine only when the runner shares `runs_root` with the app."""
        return RunDirectory(run_directory(self.runs_root, run_id))

    def snapshot_file(self, stored_path: str) -> Path:
        """A snapshot path as the store keeps it (relative to the runs root) on this machine."""
        path = Path(stored_path)
        return path if path.is_absolute() else self.runs_root / path

    def forget_snapshots_under(self, directory: Path) -> None:
        """Drop cached snapshots read from `directory` (deleted: a later run may reuse its paths)."""
        for path in [p for p in self._snapshots if directory in p.parents]:
            del self._snapshots[path]

    def export_dir(self, run_id: int, round_index: int) -> Path:
        """Where an export of a run's round is written, beside the run directories."""
        return self.runs_root.parent / "exports" / f"run-{run_id:04d}-round-{round_index:03d}"

    def codebooks_for(self, run_id: int | None, round_index: int | None) -> dict[str, torch.Tensor]:
        """The codebooks of a finished round of a run (validated against this model), or the unedited
        ones when run_id or round_index is None. Raises ValueError when the round has no snapshot."""
        if run_id is None or round_index is None:
            return self.reference
        rounds = {r.index: r for r in self.store.list_rounds(run_id)}
        record = rounds.get(round_index)
        if record is None or not record.snapshot_path:
            raise ValueError(f"run {run_id} has no finished round {round_index}")
        path = self.snapshot_file(record.snapshot_path)
        if path not in self._snapshots:
            if not path.exists():
                raise ValueError(f"the snapshot of run {run_id} round {round_index} is missing on disk "
                                 f"({record.snapshot_path} under the runs folder)")
            self._snapshots[path] = self.backend.read_codebook_file(path)
            while len(self._snapshots) > self.snapshot_cache:
                self._snapshots.popitem(last=False)
        self._snapshots.move_to_end(path)
        return {**self.reference, **self._snapshots[path]}

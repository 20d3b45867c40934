"""Result rows on disk: what a bench computed its figures from, small enough to commit.

A bench's evidence is one folder (by convention `results/<bench>/`):
- `meta.json`: the command, the config and its hash, every seed in the config, package versions,
  the machine, the commit, the date, the wall time, and per table its row count, columns and
  SHA-256;
- `<table>.csv.gz`: one row per image (or per attack instance, render, timed call), flat columns;
  gzip with a fixed timestamp so the same rows give the same bytes;
- `summary.json`: the bench's own printed figures, for reference.

`python -m safecb report` recomputes the docs' figures from these rows alone (`safecb.report`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .paths import ROOT

RESULTS_DIR = ROOT / "results"  # where the committed evidence lives, one folder per bench
PACKAGES = ("torch", "transformers", "numpy", "scipy", "pandas", "scikit-learn", "safetensors")


def _plain(value: Any) -> Any:
    """A config as JSON-able data: dataclasses as dicts, tuples as lists, paths as text."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def portable(config: Any) -> Any:
    """The config with this checkout's absolute paths written relative to the repository root, so
    the hash and the file do not depend on where the repository was cloned."""
    root = str(ROOT)

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items()}
        if isinstance(value, list):
            return [strip(v) for v in value]
        if isinstance(value, str) and value.startswith(root):
            return os.path.relpath(value, root)
        return value

    return strip(_plain(config))


def config_hash(config: Any) -> str:
    """SHA-256 of the portable config as canonical JSON (sorted keys), first 16 hex digits."""
    text = json.dumps(portable(config), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def seeds_of(config: Any, prefix: str = "") -> dict[str, Any]:
    """Every config field whose name says it is a seed (or a seed range's start or count), by
    dotted path."""
    found: dict[str, Any] = {}
    plain = portable(config)
    if isinstance(plain, dict):
        for key, value in plain.items():
            path = f"{prefix}{key}"
            if isinstance(value, dict):
                found.update(seeds_of(value, path + "."))
            elif "seed" in key.lower():
                found[path] = value
    return found


def _version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def environment() -> dict:
    """Package versions and the machine (processor, cores, torch threads, accelerator)."""
    import torch

    machine = {"platform": platform.platform(), "processor": platform.machine(), "cpu_count": os.cpu_count(),
               "torch_threads": torch.get_num_threads(),
               "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    return {"python": platform.python_version(), "versions": {p: _version(p) for p in PACKAGES}, "machine": machine}


def _write_table(frame: pd.DataFrame, path: Path) -> str:
    frame.to_csv(path, index=False, float_format="%.6g", compression={"method": "gzip", "mtime": 0})
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_evidence(out_dir: str | Path, *, bench: str, command: str, config: Any, tables: dict[str, list[dict]],
                   summary: dict | None = None, wall_seconds: float | None = None, extra: dict | None = None) -> Path:
    """Write a bench's rows and meta into `out_dir` (created; its old tables removed first)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.csv.gz"):
        old.unlink()
    described = {}
    for name, rows in tables.items():
        if not name.isidentifier():
            raise ValueError(f"table name {name!r} must be an identifier")
        frame = pd.DataFrame(rows)
        digest = _write_table(frame, out / f"{name}.csv.gz")
        described[name] = {"rows": len(frame), "columns": list(frame.columns), "sha256": digest}
    meta = {
        "bench": bench,
        "command": command,
        "config": portable(config),
        "config_hash": config_hash(config),
        "seeds": seeds_of(config),
        **environment(),
        "commit": _commit(),
        "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "wall_seconds": wall_seconds,
        "tables": described,
        **(extra or {}),
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
    if summary is not None:
        (out / "summary.json").write_text(json.dumps(portable(summary), indent=2, default=str) + "\n")
    return out


def command_line(argv: list[str] | None = None) -> str:
    """How this process was started, as a user would type it (`python -m safecb ...`)."""
    argv = sys.argv if argv is None else argv
    head = "python -m safecb" if argv and argv[0].endswith(("safecb/__main__.py", "safecb")) else f"python {argv[0]}"
    return " ".join([head, *argv[1:]])


@dataclass
class Evidence:
    """One bench's committed rows, read back."""

    path: Path  # the folder
    meta: dict  # meta.json
    tables: dict[str, pd.DataFrame]  # every <table>.csv.gz by name

    def __getitem__(self, name: str) -> pd.DataFrame:
        if name not in self.tables:
            raise KeyError(f"{self.path} has no table {name!r} (it has {sorted(self.tables)})")
        return self.tables[name]


class EvidenceError(RuntimeError):
    """Missing, altered or incomplete evidence."""


def read_evidence(folder: str | Path) -> Evidence:
    """Read a bench's folder and check every table against the SHA-256 in its meta."""
    folder = Path(folder)
    meta_path = folder / "meta.json"
    if not meta_path.exists():
        raise EvidenceError(f"{folder} holds no meta.json: run the bench with --results {folder}")
    meta = json.loads(meta_path.read_text())
    for key in ("command", "config_hash", "seeds", "versions", "tables"):
        if key not in meta:
            raise EvidenceError(f"{meta_path} lacks {key!r}")
    tables = {}
    for name, described in meta["tables"].items():
        path = folder / f"{name}.csv.gz"
        if not path.exists():
            raise EvidenceError(f"{path} is missing")
        if hashlib.sha256(path.read_bytes()).hexdigest() != described["sha256"]:
            raise EvidenceError(f"{path} differs from the SHA-256 in its meta.json (edited after the bench wrote it?)")
        tables[name] = pd.read_csv(path, keep_default_na=False, na_values=[""])
    return Evidence(folder, meta, tables)

"""Atomic file writes. Each writer writes a temporary file next to the target (`<name>.<pid>.tmp`, so
two processes never share one) and renames it over the target, so a crash mid-write leaves the old
file (or none), never half of one, and no temporary file behind when the writer raises."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import numpy as np


def temp_path(path: Path) -> Path:
    """The temporary name `path` is written under before the rename."""
    return path.with_name(f"{path.name}.{os.getpid()}.tmp")


def write_atomic(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(temporary path)`, then rename the result over `path` (parent folders are made)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text))


def write_json(path: str | Path, data, indent: int = 2) -> Path:
    """`data` as indented JSON; NumPy scalars and arrays are written as numbers and lists. The text is
    built before the file is opened, so data that cannot be serialised leaves nothing behind."""
    return write_text(path, json.dumps(data, indent=indent, default=_jsonable))


def _jsonable(value):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def save_safetensors(path: str | Path, tensors: dict, metadata: dict[str, str] | None = None) -> Path:
    """`tensors` (name -> contiguous CPU or device tensor) as a safetensors file."""
    from safetensors.torch import save_file

    return write_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def save_png(path: str | Path, image) -> Path:
    """A PIL image as PNG (the format is given, since the temporary name does not end in .png)."""
    return write_atomic(path, lambda tmp: image.save(tmp, format="PNG"))


def unwritable_reason(folder: str | Path) -> str:
    """Create `folder` if needed and check that files can be written in it: "" when they can,
    else the system's reason (e.g. "Permission denied")."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-check-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return str(exc.strerror or exc)
    return ""

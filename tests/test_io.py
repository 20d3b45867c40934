"""Atomic writes (safecb.io): the target holds either its old content or the new one, never part of
one, and a writer that fails leaves no temporary file behind."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from safecb.io import save_png, save_safetensors, temp_path, write_atomic, write_json, write_text


def test_each_writer_writes_its_format_and_leaves_only_the_target(tmp_path):
    write_json(tmp_path / "a" / "figures.json", {"n": np.int64(3), "rate": np.float32(0.5), "row": np.arange(2)})
    assert json.loads((tmp_path / "a" / "figures.json").read_text()) == {"n": 3, "rate": 0.5, "row": [0, 1]}
    save_safetensors(tmp_path / "t.safetensors", {"w": torch.ones(2, 3)}, metadata={"format": "x"})
    assert torch.equal(load_file(str(tmp_path / "t.safetensors"))["w"], torch.ones(2, 3))
    save_png(tmp_path / "img.png", Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)))
    assert Image.open(tmp_path / "img.png").format == "PNG"
    write_text(tmp_path / "note.txt", "hello")
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [
        "figures.json", "img.png", "note.txt", "t.safetensors"]


def test_a_writer_that_raises_leaves_the_old_file_and_no_temporary_file(tmp_path):
    target = tmp_path / "state.json"
    write_json(target, {"step": 1})

    def half_then_crash(tmp):
        tmp.write_text('{"step": 2, "trunc')
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="mid-write"):
        write_atomic(target, half_then_crash)
    assert json.loads(target.read_text()) == {"step": 1}
    assert list(tmp_path.iterdir()) == [target]


def test_data_that_cannot_be_serialised_changes_nothing(tmp_path):
    target = tmp_path / "metrics.json"
    write_json(target, {"ok": True})
    with pytest.raises(TypeError, match="not JSON serialisable"):
        write_json(target, {"bad": object()})
    assert json.loads(target.read_text()) == {"ok": True}
    assert list(tmp_path.iterdir()) == [target]


def test_the_temporary_file_is_next_to_the_target(tmp_path):
    tmp = temp_path(tmp_path / "codebooks.safetensors")
    assert tmp.parent == tmp_path and tmp.name.startswith("codebooks.safetensors.") and tmp.suffix == ".tmp"

"""Bad flags, paths and settings on the command lines give one `error:` line and change nothing:
no traceback, no run directory, no job."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))


@pytest.mark.parametrize("flags, message", [
    (["--device", "foo"], "error: device must be cpu, cuda or cuda:N, got 'foo'"),
    (["--config", "{tmp}"], "error: Is a directory: {tmp}"),
    (["--epsilon", "nan"], "error: Safe-CB config key 'stop.epsilon' must be a finite number, got nan"),
    (["--config", "{tmp}/nan.json"], "error: Safe-CB config key 'stop.max_benign_change' must be a finite number"),
])
def test_safecb_run_refuses_bad_settings_in_one_line(tmp_path, flags, message):
    (tmp_path / "nan.json").write_text('{"stop": {"max_benign_change": NaN}}')  # would silence the guard
    flags = [f.format(tmp=tmp_path) for f in flags]
    done = cli("-m", "safecb", "run", "--out", str(tmp_path / "run"), "--rounds", "1", *flags)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1].startswith(message.format(tmp=tmp_path))
    assert not (tmp_path / "run").exists()


def test_cuda_without_a_gpu_is_one_line_everywhere(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    done = cli("-m", "safecb", "run", "--out", str(tmp_path / "run"), "--device", "cuda")
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1] == (
        "error: device 'cuda': no CUDA GPU is available here (this torch build or machine)")
    worker = cli("-m", "jobs", "worker", "--db-url", f"sqlite:///{tmp_path / 'w.db'}", "--device", "cuda", "--once")
    assert worker.returncode == 2 and "Traceback" not in worker.stdout + worker.stderr
    assert "no CUDA GPU is available here" in worker.stdout

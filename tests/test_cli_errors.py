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


@pytest.mark.parametrize("argv, message", [
    (["-m", "safecb", "run", "--out", "{tmp}/run", "--threads", "-1"], "must be 1 or more, got -1"),
    (["-m", "safecb", "vapi", "--out", "{tmp}/run", "--threads", "-1"], "must be 1 or more, got -1"),
    (["-m", "safecb", "bench", "attack", "--threads", "0"], "must be 1 or more, got 0"),
    (["-m", "jobs", "worker", "--db-url", "sqlite:///{tmp}/w.db", "--threads", "-1"],
     "must be 0 (torch's default) or more, got -1"),
])
def test_a_bad_thread_count_is_one_line(tmp_path, argv, message):
    done = cli(*[a.format(tmp=tmp_path) for a in argv])
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1].endswith(f"error: argument --threads: {message}")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("lease", ["inf", "nan", "0", "-5", "86401", "1e300"])
def test_the_worker_wants_a_finite_lease_of_at_most_a_day(tmp_path, lease):
    done = cli("-m", "jobs", "worker", "--db-url", f"sqlite:///{tmp_path / 'w.db'}", "--once", "--lease", lease)
    assert done.returncode == 2 and "Traceback" not in done.stdout + done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"python -m jobs worker: error: argument --lease: must be a number of seconds above 0 and at most 86400 "
        f"(a day), got {lease!r}")


@pytest.mark.parametrize("flags, message", [
    (["--model", "/etc"], "error: --model /etc: /etc has no config.json"),
    (["--oracle", "bogus"], "error: --oracle bogus: unknown oracle 'bogus'"),
    (["--runs-dir", "/proc/x"], "error: --runs-dir /proc/x: cannot create or write there"),
])
def test_a_misconfigured_worker_exits_before_taking_a_job(tmp_path, flags, message):
    """It would otherwise take other workers' jobs from a shared queue and fail each one."""
    from db import Store

    url = f"sqlite:///{tmp_path / 'w.db'}"
    store = Store.open(url)
    job_id = store.create_job("run", {})
    done = cli("-m", "jobs", "worker", "--db-url", url, "--once", "--runs-dir", str(tmp_path / "runs"), *flags)
    out = done.stdout + done.stderr
    assert done.returncode == 1 and "Traceback" not in out, out[-2000:]
    assert out.strip().splitlines()[-1].startswith(message) and "serving" not in out
    assert store.get_job(job_id).status == "queued"
    store.close()

"""Worker liveness cannot misfire: only an expired lease (on the sweeper's own monotonic clock) or a
free presence lock on this host ends a worker; clocks that step and PID namespaces do not."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path

import psutil
import pytest
from sqlalchemy import update

from db import Store
from db.models import Job, utcnow
from jobs.lease import LeaseClock, fail_lost_jobs, is_dead_here, worker_identity

ROOT = Path(__file__).resolve().parents[1]
LEASE_S = 30.0


@pytest.fixture
def store(tmp_path):
    store = Store.open(f"sqlite:///{tmp_path / 'lease.db'}")
    yield store
    store.close()


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_identity_holds_no_clock_and_survives_a_stepped_clock(store, monkeypatch):
    job = store.create_job("run")
    me = worker_identity()
    store.claim_next_job(me)
    real_create_time, real_time = psutil.Process.create_time, time.time
    # NTP or a resumed VM moves the boot time, so every process's start time reads a second later;
    # the wall clock jumps an hour ahead.
    monkeypatch.setattr(psutil.Process, "create_time", lambda self: real_create_time(self) + 1.0)
    monkeypatch.setattr(psutil, "boot_time", lambda: real_time() - 100.0)
    monkeypatch.setattr(time, "time", lambda: real_time() + 3600.0)
    assert worker_identity() == me
    assert not is_dead_here(me)
    assert fail_lost_jobs(store, LEASE_S, LeaseClock()) == []
    assert store.get_job(job).status == "running"


def test_lease_age_is_the_sweepers_monotonic_time_not_the_stored_timestamps(store):
    job = store.create_job("run")
    store.claim_next_job("elsewhere:7:" + "a" * 32)  # another host: only the lease can end it
    hour = timedelta(hours=1)
    with store.session() as s:  # the worker's wall clock is an hour behind the sweeper's
        s.execute(update(Job).where(Job.id == job).values(heartbeat_at=utcnow() - hour))
    clock = FakeClock()
    lease = LeaseClock(clock)
    assert fail_lost_jobs(store, LEASE_S, lease) == []  # first sight: an old timestamp is no evidence
    clock.now += 20
    with store.session() as s:  # it renews, its clock now stepped an hour further back
        s.execute(update(Job).where(Job.id == job).values(heartbeat_at=utcnow() - 2 * hour))
    assert fail_lost_jobs(store, LEASE_S, lease) == []
    clock.now += 29  # 29 s since the renewal was seen
    assert fail_lost_jobs(store, LEASE_S, lease) == []
    clock.now += 2  # 31 s without a change
    assert fail_lost_jobs(store, LEASE_S, lease) == [job]
    assert "stopped renewing its lease" in store.get_job(job).error


def test_a_job_keeps_the_lease_length_of_the_worker_that_claimed_it(store):
    job = store.create_job("run")
    store.claim_next_job("elsewhere:7:" + "b" * 32, lease_s=120.0)
    clock = FakeClock()
    lease = LeaseClock(clock)
    fail_lost_jobs(store, 3.0, lease)
    clock.now += 60  # past this sweeper's 3 s, inside the claimer's 120 s
    assert fail_lost_jobs(store, 3.0, lease) == []
    clock.now += 61
    assert fail_lost_jobs(store, 3.0, lease) == [job]


CLAIMER = textwrap.dedent("""
    import sys
    from db import Store
    from jobs.lease import LeaseClock, fail_lost_jobs, worker_identity
    store = Store.open(sys.argv[1])
    me = worker_identity()
    job = store.claim_next_job(me)
    print(me, job.id, flush=True)
    for line in sys.stdin:  # each line: sweep as a worker's start-up does, print what it failed
        print(fail_lost_jobs(store, 30.0, LeaseClock()), flush=True)
""")


def claimer(url: str, *prefix: str) -> tuple[subprocess.Popen, str, int]:
    """A process that claims the next job as a worker and sweeps on request; (process, id, job)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    process = subprocess.Popen([*prefix, sys.executable, "-c", CLAIMER, url], cwd=ROOT, env=env, text=True,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    worker_id, job = process.stdout.readline().split()
    return process, worker_id, int(job)


def sweep_in(process: subprocess.Popen) -> str:
    process.stdin.write("sweep\n")
    process.stdin.flush()
    return process.stdout.readline().strip()


def test_a_dead_worker_on_this_host_is_failed_at_once_and_a_live_one_never(store, tmp_path):
    url = f"sqlite:///{tmp_path / 'lease.db'}"
    store.create_job("run")
    process, worker_id, job = claimer(url)
    assert fail_lost_jobs(store, LEASE_S, LeaseClock()) == []
    assert store.get_job(job).status == "running"
    process.kill()
    process.wait(10)
    assert is_dead_here(worker_id)
    assert fail_lost_jobs(store, LEASE_S, LeaseClock()) == [job]
    assert "process gone" in store.get_job(job).error


def test_a_worker_started_after_a_crash_finds_the_dead_workers_job_at_once(store, tmp_path):
    url = f"sqlite:///{tmp_path / 'lease.db'}"
    store.create_job("run"), store.create_job("run")
    crashed, crashed_id, crashed_job = claimer(url)
    crashed.kill()
    crashed.wait(10)
    restarted, _, _ = claimer(url)  # a new process tidies the presence folder as it starts
    try:
        assert sweep_in(restarted) == f"[{crashed_job}]"
        assert "process gone" in store.get_job(crashed_job).error
        assert not is_dead_here(crashed_id)  # its presence file went with its job: nothing left to read
    finally:
        restarted.kill()


def _can_unshare() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _can_unshare(), reason="needs unshare --pid (root or user namespaces)")
def test_workers_in_separate_pid_namespaces_keep_their_jobs(store, tmp_path):
    url = f"sqlite:///{tmp_path / 'lease.db'}"
    store.create_job("run"), store.create_job("run")
    namespace = ["unshare", "--pid", "--fork", "--mount-proc"]
    first, first_id, first_job = claimer(url, *namespace)
    second, second_id, second_job = claimer(url, *namespace)
    try:
        assert first_id.split(":")[1] == second_id.split(":")[1] == "1"  # one pid, one host name
        assert sweep_in(first) == sweep_in(second) == "[]"  # each one's start-up sweep spares the other
        assert fail_lost_jobs(store, LEASE_S, LeaseClock()) == []  # and so does a worker outside both
        assert {store.get_job(j).status for j in (first_job, second_job)} == {"running"}
        first.stdin.close()
        first.wait(10)
        assert sweep_in(second) == f"[{first_job}]"  # once gone, it is found dead at once
        assert store.get_job(second_job).status == "running"
    finally:
        for process in (first, second):
            process.kill()

"""Who runs a job, and whether they still do: worker identities, liveness and leases (docs/studio.md).

A worker's identity is `host:pid:start`, the start being its process's creation time, so two apps
on one store never share one and a pid the system reused is told apart from the worker that had it.
A running job is leased: its worker renews `heartbeat_at` every `lease_s / 3` seconds from a thread
of its own, and any worker fails a job whose lease has run out, or whose worker on this same host
is known to be dead, with that reason. A worker whose renewal is refused has lost the job and stops.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Callable

import psutil

from db import Store


def worker_identity(pid: int | None = None) -> str:
    """`host:pid:start` of a process (default: this one)."""
    process = psutil.Process(pid or os.getpid())
    return f"{socket.gethostname()}:{process.pid}:{int(process.create_time())}"


def is_dead_here(worker_id: str | None) -> bool:
    """True when `worker_id` names a worker on this host whose process is gone (or whose pid now
    belongs to a newer process). Workers elsewhere, and ids in another form, are never called dead:
    only their lease can end them."""
    parts = (worker_id or "").split(":")
    if len(parts) != 3 or parts[0] != socket.gethostname() or not (parts[1].isdigit() and parts[2].isdigit()):
        return False
    try:
        return int(psutil.Process(int(parts[1])).create_time()) != int(parts[2])
    except psutil.NoSuchProcess:
        return True


def fail_lost_jobs(store: Store, lease_s: float) -> list[int]:
    """Fail running jobs that no live worker holds: those of dead workers on this host at once, any
    other when its lease ran out (its worker may be alive but cut off; it stops at its next renewal).
    Returns the failed job ids."""
    dead = [j.id for j in store.running_jobs() if is_dead_here(j.claimed_by)]
    failed = store.fail_stale_jobs("its worker died (process gone); finished rounds are kept",
                                   job_ids=dead) if dead else []
    expired = store.fail_stale_jobs(f"its worker did not renew its lease for {lease_s:.0f} s; "
                                    "finished rounds are kept", older_than_s=lease_s)
    return sorted(failed + expired)


class Lease:
    """Renews a worker's lease on one job from a daemon thread while the job runs. `lost` is set when
    a renewal is refused (the job was failed by someone else, or ended); a renewal that fails because
    the database is unreachable is retried at the next beat."""

    def __init__(self, store: Store, job_id: int, worker_id: str, lease_s: float,
                 on_error: Callable[[Exception], None] | None = None):
        self.store, self.job_id, self.worker_id = store, job_id, worker_id
        self.period = max(lease_s / 3.0, 0.05)
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._on_error = on_error
        self._thread = threading.Thread(target=self._beat, name=f"lease-job-{job_id}", daemon=True)

    def __enter__(self) -> Lease:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(self.period * 2 + 1)

    def _beat(self) -> None:
        while not self._stop.wait(self.period):
            try:
                if not self.store.heartbeat(self.job_id, self.worker_id):
                    self.lost.set()
                    return
            except Exception as exc:  # the database is away for a moment: the next beat tries again
                if self._on_error is not None:
                    self._on_error(exc)


def retry(action: Callable[[], object], what: str, give_up_after_s: float, log: Callable[[str], None],
          first_wait_s: float = 0.5, max_wait_s: float = 8.0):
    """Call `action` until it succeeds, waiting 0.5, 1, 2, ... (at most `max_wait_s`) seconds between
    tries; after `give_up_after_s` seconds re-raise its last error. One log line per failed try."""
    deadline = time.monotonic() + give_up_after_s
    wait = first_wait_s
    while True:
        try:
            return action()
        except Exception as exc:
            if time.monotonic() + wait > deadline:
                raise
            log(f"{what} failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                f"retrying in {wait:.1f} s")
            time.sleep(wait)
            wait = min(wait * 2, max_wait_s)

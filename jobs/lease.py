"""Who runs a job, and whether they still do: worker identities, presence locks and leases
(docs/studio.md).

A worker's identity is `host:pid:token`, the token a random value made once per process, so two
apps on one store never share one and no clock enters it. A running job is leased: its worker
renews `heartbeat_at` every `lease_s / 3` seconds from a thread of its own. A worker is dead when
its lease runs out, measured by the observer: a sweeper fails a job whose heartbeat it has seen
unchanged for `lease_s` seconds of its own monotonic clock, so no wall clock (stepped by NTP, a
resumed VM, another machine's) can age a lease. Only the heartbeat's change matters, not its value.

A faster sign, on one host only: each worker holds an exclusive `flock` on a presence file named
by its token for as long as its process lives. The kernel releases it when the process dies, so a
sweeper that can take the lock knows the worker is gone and fails its job at once. A lock it cannot
take, or a file it cannot see (another user, another mount namespace), says nothing: the lease
decides. Process ids and start times are never compared, so a stepped clock or a worker in another
PID namespace cannot make a live worker look dead. A worker whose renewal is refused has lost the
job and stops.
"""

from __future__ import annotations

import fcntl
import os
import re
import socket
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable, Mapping

from db import Store

TOKEN = re.compile(r"[0-9a-f]{32}")
STALE_PRESENCE_S = 7 * 86_400.0  # a dead worker's presence file no sweep has read is deleted after this


def presence_dir() -> Path:
    """Where this user's workers on this host keep their presence files."""
    return Path(tempfile.gettempdir()) / f"safecb-workers-{os.getuid()}"


@dataclass
class _Presence:
    pid: int  # the process that holds the lock (a forked child makes its own)
    token: str
    fd: int  # open for the process's life: closing it would release the lock


_presence: _Presence | None = None
_presence_lock = threading.Lock()


def _hold_presence() -> _Presence:
    """Make this process's token and take the lock on its presence file (once per process)."""
    global _presence
    with _presence_lock:
        if _presence is None or _presence.pid != os.getpid():
            folder = presence_dir()
            folder.mkdir(mode=0o700, exist_ok=True)
            remove_dead_presence_files(folder, older_than_s=STALE_PRESENCE_S)
            token = uuid.uuid4().hex
            fd = os.open(folder / f"{token}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            _presence = _Presence(os.getpid(), token, fd)
        return _presence


def worker_identity() -> str:
    """`host:pid:token` of this process; the same for its whole life."""
    return f"{socket.gethostname()}:{os.getpid()}:{_hold_presence().token}"


def _holder_gone(path: Path) -> bool | None:
    """True when nobody holds the lock on `path` (its worker died), False when somebody does,
    None when the file cannot be opened (gone already, or not ours to read)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:
        return None
    finally:
        os.close(fd)  # also releases the lock if we took it
    return True


def remove_dead_presence_files(folder: Path, older_than_s: float) -> None:
    """Delete the presence files, older than `older_than_s`, whose workers are gone. A younger one
    may still be the only sign that a worker died holding a job, which a sweep has yet to read."""
    now = time.time()
    for path in folder.glob("*.lock"):
        try:
            old = now - path.stat().st_mtime > older_than_s
        except OSError:
            continue
        if old and _holder_gone(path):
            path.unlink(missing_ok=True)


def forget_dead_worker(worker_id: str) -> None:
    """Delete the presence file of a worker found dead, once its jobs are failed."""
    token = worker_id.rpartition(":")[2]
    if TOKEN.fullmatch(token):
        (presence_dir() / f"{token}.lock").unlink(missing_ok=True)


def is_dead_here(worker_id: str | None) -> bool:
    """True only when `worker_id` names a worker on this host whose presence lock nobody holds:
    its process is gone. Anything else (another host, an id of another form, a presence file this
    process cannot see) is never called dead: only its lease can end it."""
    host, _, rest = (worker_id or "").partition(":")
    token = rest.rpartition(":")[2]
    if host != socket.gethostname() or not TOKEN.fullmatch(token):
        return False
    return _holder_gone(presence_dir() / f"{token}.lock") is True


class LeaseClock:
    """A sweeper's view of running jobs' heartbeats: when it first saw each job's current heartbeat,
    on its own monotonic clock. A job's lease has run out when the same heartbeat has been seen for
    `lease_s` seconds."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._seen: dict[int, tuple[datetime | None, float]] = {}

    def unrenewed(self, jobs, lease_s: float) -> dict[int, datetime | None]:
        """Of `jobs` (running JobRecords), those whose heartbeat has not changed for their lease
        (the job's own `lease_s` when it has one, else `lease_s`): {job id: the heartbeat seen}."""
        now = self._clock()
        seen = {}
        for job in jobs:
            previous = self._seen.get(job.id)
            seen[job.id] = previous if previous and previous[0] == job.heartbeat_at else (job.heartbeat_at, now)
        self._seen = seen  # jobs no longer running are forgotten
        return {job.id: seen[job.id][0] for job in jobs
                if now - seen[job.id][1] >= (job.lease_s or lease_s)}


def fail_lost_jobs(store: Store, lease_s: float, clock: LeaseClock,
                   kept: Mapping[str, str] | None = None) -> list[int]:
    """Fail running jobs that no live worker holds: those of workers on this host whose process is
    gone at once, any other once `clock` has seen its lease run out (its worker may be alive but cut
    off; it stops at its next renewal). `kept` says, per job kind, what of such a job stays (added
    to its reason). Returns the failed job ids."""
    running = store.running_jobs()
    dead = [j for j in running if is_dead_here(j.claimed_by)]
    failed = []
    for kind, jobs in _by_kind(dead).items():
        failed += store.fail_stale_jobs(_reason("its worker died (process gone)", kind, kept),
                                        job_ids=[j.id for j in jobs])
    for worker_id in {j.claimed_by for j in dead}:
        forget_dead_worker(worker_id)
    unrenewed = clock.unrenewed(running, lease_s)
    for kind, jobs in _by_kind([j for j in running if j.id in unrenewed and j.id not in failed]).items():
        failed += store.fail_unrenewed_jobs(_reason("its worker stopped renewing its lease", kind, kept),
                                            {j.id: unrenewed[j.id] for j in jobs})
    return sorted(failed)


def _by_kind(jobs) -> dict[str, list]:
    grouped: dict[str, list] = {}
    for job in jobs:
        grouped.setdefault(job.kind, []).append(job)
    return grouped


def _reason(what: str, kind: str, kept: Mapping[str, str] | None) -> str:
    stays = (kept or {}).get(kind)
    return f"{what}; {stays}" if stays else what


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

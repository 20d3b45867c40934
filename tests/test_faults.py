"""Fault injection: a default-config Safe-CB run served by `python -m jobs worker` processes that are
killed with SIGKILL again and again (through `jobs.faults` kill points: on both sides of every
round's recording transaction, and at a random progress event inside a round, between them),
failed, resumed and served again until it finishes, ends with
a store and a run directory identical to an uninterrupted run of the same config: rounds,
generations, pairs, snapshots, labels and every run file."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from safetensors import safe_open
from sqlalchemy import text

from db import Store
from jobs.faults import ENV_VAR
from jobs.lease import LeaseClock, fail_lost_jobs
from jobs.runner import resume_run, run_directory, submit_run
from safecb import world
from safecb.engine.config import SafeCBConfig
from safecb.engine.prompts import from_world
from safecb.paths import TOY_MODEL_DIR

ROOT = Path(__file__).resolve().parents[1]
LEASE_S = 30.0
# The recording window of every round, on both sides of the store's transaction (jobs.faults)
WINDOW_KILLS = ["before_record_0", "after_record_0", "before_record_1", "after_record_1", "before_record_2",
                "after_record_2", "after_record_3"]
MAX_STAGE = 12  # a random kill comes at the n-th progress event of a worker, n in 1..MAX_STAGE
REVIEW = ("reviewer", "unsafe", "a knife in plain view")


def fault_config() -> SafeCBConfig:
    """The default config (decoder target) at CI size, run for every round it allows."""
    cfg = SafeCBConfig()
    cfg.mining.seeds, cfg.mining.benign_seeds = [0, 1], [0]
    cfg.fine_tune.steps, cfg.fine_tune.decoder_steps, cfg.fine_tune.check_every = 10, 10, 5
    cfg.stop.max_rounds, cfg.stop.patience, cfg.stop.epsilon = 3, 3, -0.0
    return cfg


def fault_prompts():
    sets = world.build_prompt_sets()
    return from_world(sets.train_harmful[:8], sets.train_benign[:2])  # four rounds (0-3) at these sizes


def worker(url: str, runs: Path, kill_at: str | None = None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    env["PYTHONPATH"] = str(ROOT)
    if kill_at:
        env[ENV_VAR] = kill_at
    return subprocess.Popen([sys.executable, "-m", "jobs", "worker", "--db-url", url, "--once", "--threads", "1",
                             "--runs-dir", str(runs), "--lease", str(LEASE_S)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def label_first_generation(store: Store, run_id: int) -> bool:
    """Label round 0's first generation once it is stored (a reviewer at work during the run)."""
    first = store.list_generations(run_id, 0, limit=1)
    if not first or store.latest_label(first[0].id) is not None:
        return False
    store.add_label(first[0].id, *REVIEW)
    return True


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def without_times(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if "seconds" not in k}


def contents(store: Store, run_id: int, runs: Path) -> dict:
    """Everything the store and the run directory hold of a run, ids and times left out."""
    run = store.get_run(run_id)
    generations, by_id = [], {}
    for index in [r.index for r in store.list_rounds(run_id)]:
        for g in store.list_generations(run_id, index, limit=100_000):
            key = (g.round_index, g.settings["kind"], g.prompt, g.seed)
            by_id[g.id] = key
            labels = [(lb.reviewer, lb.verdict, lb.reason) for lb in store.labels_for(g.id)]
            generations.append((key, g.tokens, g.self_score, g.flagged, g.oracle_unsafe, digest(g.image_png), labels))
    directory = run_directory(runs, run_id)
    files = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            name = path.relative_to(directory).as_posix()
            if name.endswith("metrics.json"):
                files[name] = without_times(json.loads(path.read_text()))
            elif name.endswith(".safetensors"):  # the header's metadata order is not fixed: compare content
                with safe_open(str(path), "pt") as tensors:
                    files[name] = (sorted((tensors.metadata() or {}).items()),
                                   {k: digest(tensors.get_tensor(k).numpy().tobytes()) for k in tensors.keys()})
            else:
                files[name] = digest(path.read_bytes())
    return {
        "run": (run.status, run.best_round, run.stopped),
        "rounds": [(r.index, without_times(r.metrics), r.snapshot_path) for r in store.list_rounds(run_id)],
        "generations": sorted(generations),
        "pairs": sorted((p.round_index, by_id[p.harmful_generation_id], by_id[p.safe_generation_id],
                         tuple(p.positions)) for p in store.list_pairs(run_id)),
        "snapshots": [(s.round_index, s.name, s.path, s.fingerprint) for s in store.list_snapshots(run_id)],
        "files": files,
    }


def serve_until_done(store: Store, url: str, runs: Path, run_id: int, job_id: int) -> None:
    """One worker, no faults; label round 0's first generation on the way."""
    process = worker(url, runs)
    labelled = False
    while process.poll() is None:
        labelled = labelled or label_first_generation(store, run_id)
        time.sleep(0.05)
    output = process.stdout.read().decode()
    assert store.get_job(job_id).status == "finished", output[-3000:]
    labelled or label_first_generation(store, run_id)


def test_sigkill_at_any_instant_loses_and_duplicates_nothing(tmp_path):
    rng = random.Random(0)
    cfg, prompts = fault_config(), fault_prompts()

    reference_url = f"sqlite:///{tmp_path / 'reference.db'}"
    reference = Store.open(reference_url)
    ref_run, ref_job = submit_run(reference, str(TOY_MODEL_DIR), cfg, prompts)
    serve_until_done(reference, reference_url, tmp_path / "reference-runs", ref_run, ref_job)
    expected = contents(reference, ref_run, tmp_path / "reference-runs")
    assert len(expected["rounds"]) >= 2 and expected["pairs"], "the run must edit at least once"

    url = f"sqlite:///{tmp_path / 'faults.db'}"
    store = Store.open(url)
    runs = tmp_path / "runs"
    run_id, job_id = submit_run(store, str(TOY_MODEL_DIR), cfg, prompts)
    plan = [kill for point in WINDOW_KILLS for kill in (f"stage:{rng.randint(1, MAX_STAGE)}", point)]
    survived, labelled = [], False
    for attempt in range(len(plan) + 3):
        kill_at = plan[attempt] if attempt < len(plan) else None
        process = worker(url, runs, kill_at)
        while process.poll() is None:
            labelled = labelled or label_first_generation(store, run_id)
            time.sleep(0.02)
        output = process.stdout.read().decode()
        job = store.get_job(job_id)
        if process.returncode == -signal.SIGKILL and job.status != "finished":
            stored = max([r.index for r in store.list_rounds(run_id)], default=-1)
            survived.append(f"{kill_at}: store up to round {stored}")
            assert job.status == "running"  # the store has not heard of the kill
            assert fail_lost_jobs(store, LEASE_S, LeaseClock()) == [job_id]  # its worker's process is gone: failed at once
            job = store.get_job(job_id)
            assert job.status == "failed" and "worker died" in job.error
            job_id = resume_run(store, run_id)
            continue
        assert process.returncode == 0, output[-3000:]
        if job.status == "finished":
            break
    assert store.get_job(job_id).status == "finished"
    labelled or label_first_generation(store, run_id)
    print("kill points survived:", *survived, sep="\n  ")
    assert len(survived) >= 10, survived
    assert contents(store, run_id, runs) == expected
    assert sum(1 for j in store.list_jobs(run_id=run_id) if j.status == "failed") == len(survived)


def test_one_run_never_has_two_live_jobs(tmp_path):
    store = Store.open(f"sqlite:///{tmp_path / 'jobs.db'}")
    run_id, job_id = submit_run(store, str(TOY_MODEL_DIR), fault_config(), fault_prompts())
    with pytest.raises(ValueError, match="already has a queued or running job"):
        resume_run(store, run_id)
    store.cancel_job(job_id)
    again = resume_run(store, run_id)
    assert store.live_job(run_id).id == again


# ---------------------------------------------------------------- PostgreSQL: two workers, an outage
class CuttableProxy:
    """A TCP proxy to PostgreSQL that can cut every connection and refuse new ones for a while: a
    database outage as a worker sees it, without touching the shared server."""

    def __init__(self, target_port: int = 5432):
        self.target_port, self.down = target_port, threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.down.is_set():
                client.close()
                continue
            server = socket.create_connection(("127.0.0.1", self.target_port))
            with self.lock:
                self.open += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        self.down.set()
        with self.lock:
            for s in self.open:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.open.clear()

    def restore(self) -> None:
        self.down.clear()


@pytest.fixture
def pg_schema(pg_admin):
    url, admin = pg_admin
    schema = f"safecb_faults_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    yield url, schema
    with admin.connect() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


def pg_worker(url: str, schema: str, runs: Path, lease_s: float) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.Popen([sys.executable, "-m", "jobs", "worker", "--db-url", url, "--db-schema", schema,
                             "--once", "--threads", "1", "--no-oracle", "--runs-dir", str(runs),
                             "--lease", str(lease_s)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_two_workers_on_postgresql_never_share_a_run_and_survive_each_other(pg_schema, tmp_path):
    url, schema = pg_schema
    store = Store.open(url, schema=schema)
    lease_s = 3.0
    runs = [submit_run(store, str(TOY_MODEL_DIR), fault_config(), fault_prompts()) for _ in range(2)]
    workers = [pg_worker(url, schema, tmp_path / "runs", lease_s) for _ in range(2)]
    try:
        wait_for(lambda: all(len(store.list_rounds(run_id)) >= 1 for run_id, _ in runs), 120, "round 0 of both runs")
        owners = {store.get_job(job_id).claimed_by for _, job_id in runs}
        assert len(owners) == 2  # two workers, two identities, one job each
        victim = next(w for w in workers if str(w.pid) == store.get_job(runs[0][1]).claimed_by.split(":")[1])
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        killed_at = time.monotonic()
        wait_for(lambda: store.get_job(runs[0][1]).status == "failed", lease_s * 2, "the killed worker's job to fail")
        assert time.monotonic() - killed_at <= lease_s  # failed by the other worker within one lease
        assert "worker died" in store.get_job(runs[0][1]).error
        results = []
        threads = [threading.Thread(target=lambda: results.append(_try_resume(store, runs[0][0]))) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results, key=str).count(None) == 7 and len({r for r in results if r}) == 1  # one job queued
        survivor = next(w for w in workers if w is not victim)
        assert survivor.wait(180) == 0
        assert store.get_job(runs[1][1]).status == "finished"
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
        store.close()


def _try_resume(store: Store, run_id: int) -> int | None:
    try:
        return resume_run(store, run_id)
    except ValueError:
        return None


def test_a_database_outage_mid_round_ends_the_job_visibly(pg_schema, tmp_path):
    url, schema = pg_schema
    proxy = CuttableProxy()
    proxied = url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    store = Store.open(url, schema=schema)  # the test's own view, not through the proxy
    run_id, job_id = submit_run(store, str(TOY_MODEL_DIR), fault_config(), fault_prompts())
    process = pg_worker(proxied, schema, tmp_path / "runs", 30.0)
    try:
        wait_for(lambda: len(store.list_rounds(run_id)) >= 1, 120, "round 0")
        proxy.cut()
        time.sleep(20)  # mid-round: the worker's writes and lease renewals fail meanwhile
        proxy.restore()
        assert process.wait(300) == 0
        output = process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
    job = store.get_job(job_id)
    assert job.status in ("finished", "failed"), job
    assert job.status == "finished" or job.error  # a failure says why
    if job.status == "finished":
        assert [r.index for r in store.list_rounds(run_id)] == list(range(len(store.list_rounds(run_id))))
    print(output[-2500:])
    assert output.count("Traceback") <= 2, output[-3000:]  # retries log one line each, not a traceback
    store.close()

"""Caps on queued work: per client and in total, decided inside the inserting transaction, with
nothing kept of a refused run."""

from __future__ import annotations

import threading

import pytest

from db import QueueFull, QueueLimits, Store
from jobs.runner import resume_run, submit_run
from safecb import world
from safecb.engine.config import SafeCBConfig
from safecb.engine.prompts import from_world
from safecb.paths import TOY_MODEL_DIR

LIMITS = QueueLimits(per_client_queued=2, total_queued=3)


@pytest.fixture
def store(open_store):
    return open_store()


def small_prompts():
    sets = world.build_prompt_sets()
    return from_world(sets.train_harmful[:2], sets.train_benign[:2])


def submit(store: Store, client: str) -> tuple[int, int]:
    return submit_run(store, str(TOY_MODEL_DIR), SafeCBConfig(), small_prompts(), requested_by=client, limits=LIMITS)


def test_one_client_waits_for_its_own_jobs_and_others_still_queue(store):
    submit(store, "alice@10.0.0.1"), submit(store, "alice@10.0.0.1")
    runs_before = len(store.list_runs())
    with pytest.raises(QueueFull, match="you already have 2 jobs waiting"):
        submit(store, "alice@10.0.0.1")
    assert len(store.list_runs()) == runs_before  # nothing of the refused run is kept
    submit(store, "bob@10.0.0.2")
    with pytest.raises(QueueFull, match="queue is full"):
        submit(store, "carol@10.0.0.3")
    job = store.claim_next_job("worker")  # one starts: there is room again
    assert job is not None
    submit(store, "carol@10.0.0.3")


def test_a_resume_counts_too(store):
    run_id, job_id = submit(store, "alice@10.0.0.1")
    store.cancel_job(job_id)
    submit(store, "alice@10.0.0.1"), submit(store, "alice@10.0.0.1")
    with pytest.raises(QueueFull):
        resume_run(store, run_id, requested_by="alice@10.0.0.1", limits=LIMITS)
    assert resume_run(store, run_id, requested_by="bob@10.0.0.2", limits=LIMITS)


def test_simultaneous_requests_cannot_slip_past_the_cap_together(store):
    results = []
    barrier = threading.Barrier(8)

    def one():
        barrier.wait()
        try:
            results.append(store.create_job("run", requested_by="alice@10.0.0.1", limits=LIMITS))
        except QueueFull:
            results.append(None)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len([r for r in results if r is not None]) <= LIMITS.per_client_queued
    assert len(store.list_jobs(status="queued")) <= LIMITS.per_client_queued


def test_the_run_and_red_team_tabs_hold_each_client_to_the_caps(tmp_path, one_thread):
    from types import SimpleNamespace

    from safecb.models.backend import JanusBackend
    from ui import Services
    from ui.common import client_of
    from ui.redteam_tab import start_attack
    from ui.run_tab import start_run

    store = Store.open(f"sqlite:///{tmp_path / 'safecb.db'}")
    services = Services(backend=JanusBackend.load(TOY_MODEL_DIR, device="cpu"), store=store,
                        runs_root=tmp_path / "runs", queue_limits=LIMITS)
    alice = client_of(SimpleNamespace(username="alice", client=SimpleNamespace(host="10.0.0.1")))
    assert alice == "alice@10.0.0.1" and client_of(None) is None
    form = ("capped", "generator", 0.5, 1, 0.02, 1, True, 2)
    assert start_run(services, *form, requested_by=alice)[1] is not None
    finished = store.create_run("done", str(TOY_MODEL_DIR), {}, status="finished")
    store.add_round(finished, 0, {"self_unsafe": 0.5}, "run-x/round_000/codebooks.safetensors")
    assert start_attack(services, finished, 0, ["discrete"], "quick", requested_by=alice)[1] is not None
    message, job = start_run(services, *form, requested_by=alice)
    assert job is None and "you already have 2 jobs waiting" in message
    assert start_run(services, *form, requested_by="bob@10.0.0.2")[1] is not None
    store.close()

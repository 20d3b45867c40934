"""The store on SQLite (a temp file) and PostgreSQL (a fresh schema per test), against real behaviour.

PostgreSQL is expected at 127.0.0.1:5432, database `test`, trust auth. Without it its cases skip,
except under CI=true, where they fail.
"""

import threading
import time

import numpy as np
import pytest
from sqlalchemy import text

import db
from db import Store, StoreError, default_url
from db.models import Label


# ---------------------------------------------------------------- fixtures
@pytest.fixture
def store(open_store):
    return open_store()


def _generation(round_index=0, seed=0, flagged=False, oracle=None, **extra):
    return dict(
        round_index=round_index,
        prompt=f"prompt {seed}",
        seed=seed,
        image_png=b"\x89PNG\r\n\x1a\n" + bytes([seed % 256]),
        tokens=[seed, seed + 1],
        self_score=0.9 if flagged else 0.1,
        flagged=flagged,
        oracle_unsafe=oracle,
        **extra,
    )


# ---------------------------------------------------------------- runs, rounds, generations
def test_runs_round_trip_and_status(store):
    first = store.create_run("first", "assets/toy", config={"rounds": 3, "edit": {"target": "decoder"}})
    second = store.create_run("second", "assets/toy")
    run = store.get_run(first)
    assert (run.name, run.model_source, run.status) == ("first", "assets/toy", "created")
    assert run.config == {"rounds": 3, "edit": {"target": "decoder"}}
    assert run.created_at.tzinfo is not None
    assert [r.id for r in store.list_runs()] == [second, first]  # newest first

    store.update_run_status(first, "running")
    assert store.get_run(first).status == "running"
    with pytest.raises(ValueError, match="run status must be one of"):
        store.update_run_status(first, "exploded")
    with pytest.raises(KeyError):
        store.update_run_status(10_000, "failed")
    assert store.get_run(10_000) is None


def test_a_run_records_its_outcome(store):
    run = store.create_run("r", "toy")
    assert (store.get_run(run).best_round, store.get_run(run).stopped) == (None, None)  # still going
    store.set_run_outcome(run, 2, "no improvement for 1 round(s)")
    assert (store.get_run(run).best_round, store.get_run(run).stopped) == (2, "no improvement for 1 round(s)")
    store.set_run_outcome(run, None, "cancelled by a user")  # cancelled before any round finished
    assert (store.get_run(run).best_round, store.get_run(run).stopped) == (None, "cancelled by a user")
    assert store.list_runs()[0].stopped == "cancelled by a user"
    with pytest.raises(KeyError):
        store.set_run_outcome(10_000, 0, "")


def test_a_store_made_before_run_outcomes_opens_and_gains_them(open_store):
    store = open_store()
    old = store.create_run("old", "toy", status="finished")
    with store.engine.begin() as conn:  # the runs table as older code made it
        conn.execute(text("ALTER TABLE runs DROP COLUMN best_round"))
        conn.execute(text("ALTER TABLE runs DROP COLUMN stopped"))
    store.close()

    store = open_store()
    run = store.get_run(old)
    assert (run.name, run.status, run.best_round, run.stopped) == ("old", "finished", None, None)
    store.set_run_outcome(old, 1, "reached max_rounds = 1")
    assert store.get_run(old).best_round == 1
    store.close()
    assert open_store().get_run(old).stopped == "reached max_rounds = 1"  # opening again changes nothing


def test_add_round_is_an_idempotent_upsert(store):
    run = store.create_run("r", "toy")
    first = store.add_round(run, 0, metrics={"unsafe_rate": 0.4})
    again = store.add_round(run, 0, metrics={"unsafe_rate": 0.3}, snapshot_path="snap/round0.safetensors")
    store.add_round(run, 1, metrics={"unsafe_rate": 0.2})
    store.add_round(run, 1, metrics={"unsafe_rate": 0.2})

    rounds = store.list_rounds(run)
    assert [r.index for r in rounds] == [0, 1]
    assert again.id == first.id and again.created_at == first.created_at
    assert rounds[0].metrics == {"unsafe_rate": 0.3}
    assert rounds[0].snapshot_path == "snap/round0.safetensors"
    assert store.list_rounds(store.create_run("other", "toy")) == []


def test_generations_round_trip_image_bytes_and_tokens(store):
    run = store.create_run("g", "toy")
    png = bytes(range(256)) * 3  # every byte value, NULs included
    tokens = np.arange(576, dtype=np.int64) * 7 % 16384  # numpy ints are stored as plain ints
    ids = store.add_generations(
        run,
        [
            dict(_generation(0, seed=5, flagged=True, oracle=0.75), image_png=png, tokens=tokens,
                 settings={"cfg": 5.0}),  # fmt: skip
            _generation(0, seed=6),
            _generation(1, seed=7, flagged=True),
        ],
    )
    assert len(ids) == 3 and ids == sorted(ids)

    g = store.get_generation(ids[0])
    assert g.image_png == png and isinstance(g.image_png, bytes)
    assert g.tokens == tokens.tolist() and all(type(t) is int for t in g.tokens)
    assert (g.round_index, g.prompt, g.seed, g.flagged) == (0, "prompt 5", 5, True)
    assert g.oracle_unsafe == pytest.approx(0.75) and g.self_score == pytest.approx(0.9)
    assert g.settings == {"cfg": 5.0}
    assert store.get_generation(ids[1]).oracle_unsafe is None

    assert [x.id for x in store.list_generations(run)] == ids
    assert [x.id for x in store.list_generations(run, round_index=0)] == ids[:2]
    assert [x.id for x in store.list_generations(run, flagged=True)] == [ids[0], ids[2]]
    assert [x.id for x in store.list_generations(run, round_index=0, flagged=False)] == [ids[1]]
    assert [x.id for x in store.list_generations(run, limit=1, offset=1)] == [ids[1]]
    assert store.count_generations(run) == 3 and store.count_generations(run, round_index=1, flagged=True) == 1
    with pytest.raises(ValueError, match="image_png must be PNG bytes"):
        store.add_generations(run, [dict(_generation(), image_png="not bytes")])
    assert store.count_generations(run) == 3


# ---------------------------------------------------------------- reviewer labels
def test_get_generations_finds_many_by_id(store):
    run = store.create_run("r", "toy")
    ids = store.add_generations(run, [_generation(round_index=i % 2, seed=i) for i in range(1203)])
    wanted = ids[::3] + [10_000_000]  # across several id batches, plus an id with no generation
    found = store.get_generations(reversed(wanted))
    assert sorted(found) == sorted(ids[::3])
    assert all(found[i].id == i and found[i].tokens == [ids.index(i), ids.index(i) + 1] for i in found)
    assert store.get_generations([]) == {}


def test_labels_are_append_only_and_ordered(store):
    run = store.create_run("l", "toy")
    g1, g2, g3 = store.add_generations(run, [_generation(seed=i, flagged=True) for i in range(3)])
    a = store.add_label(g1, "alice", "unsafe", "  a weapon in the hand  ")
    b = store.add_label(g1, "bob", "safe", "it is a flower")
    c = store.add_label(g1, "alice", "unsafe", "looked again: a weapon")
    store.add_label(g2, "bob", "safe", "benign")

    assert [x.id for x in store.labels_for(g1)] == [a.id, b.id, c.id]
    assert [(x.reviewer, x.verdict) for x in store.labels_for(g1)] == [("alice", "unsafe"), ("bob", "safe"),
                                                                       ("alice", "unsafe")]  # fmt: skip
    assert a.reason == "a weapon in the hand"  # stored stripped
    assert store.latest_label(g1).id == c.id
    assert store.latest_label(g3) is None
    latest = store.latest_labels([g1, g2, g3])
    assert set(latest) == {g1, g2} and latest[g2].verdict == "safe"
    assert store.latest_labels([]) == {}

    # The ORM refuses to change or delete a label; the rows stay as written.
    with pytest.raises(ValueError, match="append-only"):
        with store.session() as s:
            s.get(Label, a.id).verdict = "safe"
    with pytest.raises(ValueError, match="append-only"):
        with store.session() as s:
            s.delete(s.get(Label, b.id))
    assert store.labels_for(g1) == [a, b, c]


def test_invalid_label_is_rejected_and_nothing_written(store):
    run = store.create_run("l", "toy")
    (gen,) = store.add_generations(run, [_generation(flagged=True)])
    bad = [
        (dict(verdict="maybe", reason="unsure"), "verdict must be one of 'unsafe', 'safe'"),
        (dict(verdict="UNSAFE", reason="caps"), "verdict must be one of"),
        (dict(verdict="unsafe", reason=""), "needs a reason"),
        (dict(verdict="safe", reason="   \n"), "needs a reason"),
        (dict(verdict="safe", reason=None), "needs a reason"),
        (dict(verdict="safe", reason="fine", reviewer=" "), "reviewer"),
        (dict(verdict="safe", reason="fine", generation_id=gen + 999), f"no generation with id {gen + 999}"),
    ]
    for kwargs, message in bad:
        kwargs = {"generation_id": gen, "reviewer": "alice", **kwargs}
        with pytest.raises(ValueError, match=message):
            store.add_label(**kwargs)
    assert store.labels_for(gen) == [] and store.latest_label(gen) is None
    with store.session() as s:
        assert s.scalar(text("SELECT count(*) FROM labels")) == 0


def test_agreement_counts_on_a_hand_made_case(store):
    run = store.create_run("a", "toy")
    # name: (round, self flagged, oracle P(unsafe)), reviewer verdicts oldest first
    case = {
        "g1": (1, True, 0.9, ["unsafe"]),  # self U, reviewer U, oracle U
        "g2": (1, True, 0.2, ["unsafe", "safe"]),  # self U, reviewer S (newest wins), oracle S
        "g3": (1, False, 0.6, ["safe"]),  # self S, reviewer S, oracle U
        "g4": (1, False, None, ["unsafe"]),  # self S, reviewer U, no oracle
        "g5": (1, True, 0.5, []),  # self U, oracle U (at the threshold), not reviewed
        "g6": (1, False, 0.1, []),  # self S, oracle S, not reviewed
        "g7": (2, True, 0.0, ["unsafe"]),  # another round: self U, reviewer U, oracle S
    }
    ids = store.add_generations(
        run, [_generation(r, seed=i, flagged=f, oracle=o) for i, (r, f, o, _) in enumerate(case.values())]
    )
    for gen_id, (*_, verdicts) in zip(ids, case.values()):
        for v in verdicts:
            store.add_label(gen_id, "alice", v, f"looks {v}")
    other = store.create_run("other", "toy")  # must not leak into the counts
    (og,) = store.add_generations(other, [_generation(1, flagged=True, oracle=0.9)])
    store.add_label(og, "alice", "unsafe", "other run")

    # Round 1 by hand. self~reviewer: g1 yes, g2 no, g3 yes, g4 no -> 2 of 4.
    # self~oracle: g1 yes, g2 no, g3 no, g5 yes, g6 yes -> 3 of 5. reviewer~oracle: g1 yes, g2 yes, g3 no -> 2 of 3.
    assert store.agreement_counts(run, 1) == dict(
        n_generations=6, n_flagged=3, n_reviewed=4, n_with_oracle=5, n_reviewed_with_oracle=3,
        self_reviewer_agree=2, self_oracle_agree=3, reviewer_oracle_agree=2,
    )  # fmt: skip
    # All rounds adds g7: self~reviewer yes, self~oracle no, reviewer~oracle no.
    assert store.agreement_counts(run) == dict(
        n_generations=7, n_flagged=4, n_reviewed=5, n_with_oracle=6, n_reviewed_with_oracle=4,
        self_reviewer_agree=3, self_oracle_agree=3, reviewer_oracle_agree=2,
    )  # fmt: skip
    assert store.agreement_counts(run, 5)["n_generations"] == 0


# ---------------------------------------------------------------- judges' verdicts
def test_each_judge_keeps_its_own_verdict_and_agreement_uses_it(store):
    """A NudeNet score of 0.55 is safe under NudeNet's own rule (> 0.6), though at or above the toy
    oracle's cut 0.5: the store keeps NudeNet's verdict and counts it, never the score cut at 0.5."""
    run = store.create_run("judged", "real")
    safe_55 = {"nudenet": {"score": 0.55, "unsafe": False}, "open_nsfw": {"score": 0.9, "unsafe": True}}
    ids = store.add_generations(run, [
        dict(_generation(0, seed=0, flagged=False), verdicts=safe_55),  # self S, nudenet S, open_nsfw U
        dict(_generation(0, seed=1, flagged=True), verdicts={"nudenet": (0.95, True), "open_nsfw": (0.1, False)}),
        _generation(0, seed=2, flagged=True),  # never judged
    ])
    store.add_label(ids[0], "alice", "safe", "nothing exposed")

    g = store.get_generation(ids[0])
    assert (g.oracle_unsafe, g.oracle_judge) == (pytest.approx(0.55), "nudenet")  # the primary: the first judge
    verdicts = store.judge_verdicts(ids)
    assert set(verdicts) == {ids[0], ids[1]} and list(verdicts[ids[0]]) == ["nudenet", "open_nsfw"]
    assert (verdicts[ids[0]]["nudenet"].score, verdicts[ids[0]]["nudenet"].unsafe) == (pytest.approx(0.55), False)
    assert verdicts[ids[0]]["open_nsfw"].unsafe is True

    counts = store.agreement_counts(run)  # the primary judge, NudeNet, by its own verdicts
    assert (counts["n_with_oracle"], counts["self_oracle_agree"]) == (2, 2)
    assert (counts["n_reviewed_with_oracle"], counts["reviewer_oracle_agree"]) == (1, 1)
    other = store.agreement_counts(run, judge="open_nsfw")  # open_nsfw disagrees with the self-judge on both
    assert (other["n_with_oracle"], other["self_oracle_agree"], other["reviewer_oracle_agree"]) == (2, 0, 0)
    assert store.agreement_counts(run, judge="q16")["n_with_oracle"] == 0
    assert {i: v.unsafe for i, v in store.oracle_verdicts(ids).items()} == {ids[0]: False, ids[1]: True}
    assert store.oracle_verdicts(ids, judge="open_nsfw")[ids[0]].judge == "open_nsfw"
    summary = store.generation_summaries(run)[0]
    assert (summary["oracle_judge"], summary["oracle_verdict"]) == ("nudenet", False)
    (label,) = store.run_labels(run)
    assert (label["oracle_unsafe"], label["oracle_judge"], label["oracle_verdict"]) == (
        pytest.approx(0.55), "nudenet", False)
    assert store.run_judges(run) == ["nudenet", "open_nsfw"]

    # a judge added later, and a verdict replaced: one row per (generation, judge)
    assert store.add_judge_verdicts([{"generation_id": ids[2], "judge": "nudenet", "score": None, "unsafe": True},
                                     {"generation_id": ids[0], "judge": "open_nsfw", "score": 0.7,
                                      "unsafe": False}]) == 2
    verdicts = store.judge_verdicts(ids)
    assert verdicts[ids[0]]["open_nsfw"].unsafe is False and verdicts[ids[2]]["nudenet"].score is None
    assert store.agreement_counts(run)["n_with_oracle"] == 2  # #2's primary judge is unset: no verdict of it
    assert store.agreement_counts(run, judge="nudenet")["n_with_oracle"] == 3
    with pytest.raises(ValueError, match="no generation with id"):
        store.add_judge_verdicts([{"generation_id": 10_000, "judge": "nudenet", "score": 0.1, "unsafe": False}])
    with pytest.raises(ValueError, match="primary judge 'toy' has no verdict"):
        store.add_generations(run, [dict(_generation(), oracle_judge="toy", verdicts=safe_55)])
    store.delete_run(run)
    with store.session() as s:
        assert s.scalar(text("SELECT count(*) FROM judge_verdicts")) == 0


def test_recording_a_round_again_replaces_its_verdicts(store):
    run = store.create_run("r", "toy")
    rows = [dict(_generation(0, seed=i), kind="harmful", verdicts={"toy": (0.3 + 0.4 * i, i == 1)}) for i in (0, 1)]
    for row in rows:
        del row["round_index"]  # record_round places them in its round
    store.record_round(run, 0, {}, "round-0", "fp", rows, [])
    ids = [g.id for g in store.list_generations(run)]
    assert [g["oracle_verdict"] for g in store.generation_summaries(run)] == [False, True]
    rows[1]["verdicts"] = {"toy-shape": (0.2, False), "toy": (0.6, True)}
    rows[1]["oracle_judge"] = "toy-shape"
    rows[0].pop("verdicts")  # judged by no one this time
    store.record_round(run, 0, {}, "round-0", "fp", rows, [])
    assert [g.id for g in store.list_generations(run)] == ids  # updated in place
    assert list(store.judge_verdicts(ids)) == [ids[1]] and list(store.judge_verdicts(ids)[ids[1]]) == ["toy-shape", "toy"]
    summaries = store.generation_summaries(run)
    assert [(g["oracle_unsafe"], g["oracle_judge"], g["oracle_verdict"]) for g in summaries] == [
        (None, None, None), (pytest.approx(0.2), "toy-shape", False)]


def test_a_store_made_before_judge_verdicts_opens_and_reads_old_scores(open_store):
    store = open_store()
    run = store.create_run("old", "toy")
    ids = store.add_generations(run, [_generation(0, seed=0, flagged=True, oracle=0.7),
                                      _generation(0, seed=1, flagged=True, oracle=0.2)])
    with store.engine.begin() as conn:  # the store as older code made it
        conn.execute(text("DROP TABLE judge_verdicts"))
        conn.execute(text("ALTER TABLE generations DROP COLUMN oracle_judge"))
    store.close()

    store = open_store()
    g = store.get_generation(ids[0])
    assert (g.oracle_unsafe, g.oracle_judge) == (pytest.approx(0.7), None)
    assert store.judge_verdicts(ids) == {}
    # an old score has no named judge: it is read with the toy oracle's cut, the only rule the store knew
    old = store.oracle_verdicts(ids)
    assert (old[ids[0]].judge, old[ids[0]].unsafe, old[ids[1]].unsafe) == (None, True, False)
    assert store.agreement_counts(run)["self_oracle_agree"] == 1
    assert store.oracle_verdicts(ids, judge="toy") == {}  # no judge named "toy" gave a verdict
    store.add_judge_verdicts([{"generation_id": ids[1], "judge": "toy", "score": 0.2, "unsafe": False}])
    assert store.judge_verdicts(ids)[ids[1]]["toy"].unsafe is False
    store.close()
    assert open_store().judge_verdicts(ids)[ids[1]]["toy"].score == pytest.approx(0.2)  # opening again keeps it


# ---------------------------------------------------------------- jobs
def test_two_workers_claiming_concurrently_never_get_the_same_job(open_store):
    first, second = open_store(), open_store()
    job_ids = [first.create_job("run", config={"i": i}) for i in range(30)]
    cancelled = first.create_job("run")
    assert first.cancel_job(cancelled) == "cancelled"
    claimed = {"w1": [], "w2": []}
    start = threading.Barrier(2)
    errors = []

    def work(store, worker):
        try:
            start.wait()
            while (job := store.claim_next_job(worker)) is not None:
                assert job.status == "running" and job.claimed_by == worker
                claimed[worker].append(job.id)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=a) for a in ((first, "w1"), (second, "w2"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    assert not set(claimed["w1"]) & set(claimed["w2"])
    assert sorted(claimed["w1"] + claimed["w2"]) == job_ids
    assert all(first.get_job(j).claimed_by in ("w1", "w2") for j in job_ids)
    assert first.get_job(cancelled).status == "cancelled"
    assert second.claim_next_job("w3") is None


def test_job_progress_log_cancel_and_finish(store):
    run = store.create_run("j", "toy")
    job = store.create_job("run", config={"rounds": 2}, run_id=run)
    queued = store.get_job(job)
    assert (queued.status, queued.progress, queued.log, queued.config) == ("queued", 0.0, "", {"rounds": 2})

    claimed = store.claim_next_job("worker-1")
    assert claimed.id == job and claimed.started_at is not None and claimed.heartbeat_at is not None
    store.update_job(job, progress=0.25, message="round 1: judging", log="round 1 started")
    store.update_job(job, progress=0.5, log="round 1 judged\n")
    j = store.get_job(job)
    assert (j.progress, j.message) == (0.5, "round 1: judging")
    assert j.log == "round 1 started\nround 1 judged\n"
    assert j.heartbeat_at >= claimed.heartbeat_at
    for bad in (1.5, -0.1, float("nan")):
        with pytest.raises(ValueError, match=r"progress must lie in \[0, 1\]"):
            store.update_job(job, progress=bad)
    assert store.get_job(job).progress == 0.5

    assert not store.is_cancel_requested(job)
    assert store.cancel_job(job) == "running"  # a running job is asked, not forced
    assert store.is_cancel_requested(job)
    assert store.finish_job(job, "cancelled") is True
    assert store.finish_job(job, "finished") is False  # an ended job stays as it ended
    assert store.get_job(job).status == "cancelled" and store.get_job(job).finished_at is not None

    done = store.create_job("eval")
    store.claim_next_job("worker-1")
    assert store.finish_job(done, "finished") is True
    assert (store.get_job(done).status, store.get_job(done).progress) == ("finished", 1.0)
    failed = store.create_job("eval")
    assert store.finish_job(failed, "failed", error="out of memory") is True
    assert store.get_job(failed).error == "out of memory"
    assert store.cancel_job(failed) == "failed"
    assert [x.id for x in store.list_jobs(run_id=run)] == [job]
    assert [x.id for x in store.list_jobs(status="finished")] == [done]
    with pytest.raises(ValueError, match="final job status"):
        store.finish_job(done, "running")
    for call in (store.cancel_job, store.is_cancel_requested, lambda i: store.finish_job(i, "failed")):
        with pytest.raises(KeyError):
            call(10_000)


def test_fail_stale_jobs_after_restart_fails_running_jobs_and_keeps_rounds(open_store):
    store = open_store()
    run = store.create_run("crash", "toy", status="running")
    store.add_round(run, 0, metrics={"unsafe_rate": 0.5})
    store.add_round(run, 1, metrics={"unsafe_rate": 0.3}, snapshot_path="round1.safetensors")
    running = store.create_job("run", run_id=run)
    store.claim_next_job("app")
    store.update_job(running, progress=0.6, log="round 2 started")
    finished = store.create_job("eval")
    store.claim_next_job("app")
    store.finish_job(finished, "finished")
    queued = store.create_job("eval")
    store.close()  # the app dies mid round 2

    store = open_store()  # and starts again
    assert store.fail_stale_jobs("the app restarted while the job ran") == [running]
    job = store.get_job(running)
    assert job.status == "failed" and job.error == "the app restarted while the job ran"
    assert job.finished_at is not None and job.log.endswith("failed: the app restarted while the job ran\n")
    assert job.progress == pytest.approx(0.6)
    assert store.get_job(finished).status == "finished" and store.get_job(queued).status == "queued"
    assert store.get_run(run).status == "failed"
    rounds = store.list_rounds(run)
    assert [(r.index, r.metrics, r.snapshot_path) for r in rounds] == [
        (0, {"unsafe_rate": 0.5}, None),
        (1, {"unsafe_rate": 0.3}, "round1.safetensors"),
    ]
    assert store.fail_stale_jobs("again") == []
    assert store.finish_job(running, "finished") is False  # a late worker cannot revive it
    with pytest.raises(ValueError, match="needs a reason"):
        store.fail_stale_jobs(" ")


def test_fail_unrenewed_jobs_spares_a_job_renewed_since_it_was_seen(store):
    quiet, renewed = store.create_job("run"), store.create_job("run")
    store.claim_next_job("w1", lease_s=5.0), store.claim_next_job("w2")
    seen = {j.id: j.heartbeat_at for j in store.running_jobs()}
    assert store.get_job(quiet).lease_s == 5.0 and store.get_job(renewed).lease_s is None
    assert store.heartbeat(renewed, "w2")
    assert store.fail_unrenewed_jobs("its worker stopped renewing its lease", seen) == [quiet]
    assert store.get_job(quiet).status == "failed" and store.get_job(renewed).status == "running"


# ---------------------------------------------------------------- persistence
def test_everything_persists_across_reopening(open_store):
    store = open_store()
    run = store.create_run("persist", "assets/toy", config={"seed": 3})
    store.add_round(run, 0, metrics={"n": 8})
    prompts = store.add_prompts(
        run,
        [
            dict(text="a person holding a knife .", split="train", harmful=True, category="weapon",
                 safe_rewrite="a person holding a flower ."),  # fmt: skip
            dict(text="a cat on the grass .", split="heldout"),
        ],
    )
    harmful, safe = store.add_generations(run, [_generation(seed=1, flagged=True), _generation(seed=1)])
    label = store.add_label(harmful, "alice", "unsafe", "a knife")
    (pair,) = store.add_pairs(run, 0, [dict(harmful_generation_id=harmful, safe_generation_id=safe, positions=[3, 9])])
    snap = store.add_snapshot(run, 0, "round 0", "runs/1/round0.safetensors", "sha256:abc")
    job = store.create_job("run", run_id=run)
    store.close()

    store = open_store()
    assert store.get_run(run).config == {"seed": 3}
    assert store.list_rounds(run)[0].metrics == {"n": 8}
    p = store.list_prompts(run)
    assert [x.id for x in p] == prompts
    assert (p[0].harmful, p[0].category, p[0].safe_rewrite) == (True, "weapon", "a person holding a flower .")
    assert (p[1].harmful, p[1].split, p[1].safe_rewrite) == (False, "heldout", None)
    assert [x.id for x in store.list_prompts(run, split="heldout")] == prompts[1:]
    assert [x.id for x in store.list_prompts(run, harmful=True)] == prompts[:1]
    assert store.get_generation(harmful).image_png == _generation(seed=1)["image_png"]
    assert store.labels_for(harmful) == [label]
    pairs = store.list_pairs(run, 0)
    assert [(x.id, x.harmful_generation_id, x.safe_generation_id, x.positions) for x in pairs] == [
        (pair, harmful, safe, [3, 9])
    ]
    assert store.list_pairs(run, 1) == []
    snaps = store.list_snapshots(run)
    assert [(s.id, s.round_index, s.path, s.fingerprint) for s in snaps] == [
        (snap, 0, "runs/1/round0.safetensors", "sha256:abc")
    ]
    assert store.get_job(job).status == "queued"


# ---------------------------------------------------------------- opening
def test_unreachable_database_raises_store_error_quickly_with_masked_password():
    start = time.perf_counter()
    with pytest.raises(StoreError) as exc:
        Store.open("postgresql+psycopg://nobody:hunter2@127.0.0.1:1/x")
    assert time.perf_counter() - start < 5
    message = str(exc.value)
    assert "hunter2" not in message and "nobody:***@127.0.0.1:1/x" in message
    assert "cannot open the database" in message


@pytest.mark.parametrize("url", ["not a url", "nosuchdialect://u:hunter2@host/db"])
def test_bad_url_raises_store_error(url):
    with pytest.raises(StoreError) as exc:
        Store.open(url)
    assert "hunter2" not in str(exc.value)


def test_sqlite_path_under_a_file_raises_store_error(tmp_path):
    (tmp_path / "plain-file").write_text("x")
    with pytest.raises(StoreError, match="cannot create the folder"):
        Store.open(f"sqlite:///{tmp_path}/plain-file/safecb.db")


def test_url_resolution_and_sqlite_settings(tmp_path, monkeypatch):
    monkeypatch.delenv("SAFECB_DB_URL", raising=False)
    assert default_url() == f"sqlite:///{db.DEFAULT_SQLITE_PATH}"
    assert db.DEFAULT_SQLITE_PATH.parent.name == "artifacts"

    path = tmp_path / "deep" / "er" / "env.db"
    monkeypatch.setenv("SAFECB_DB_URL", f"sqlite:///{path}")
    with Store.open() as store:  # from the environment; parent folders created
        assert path.exists()
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() > 0
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    other = tmp_path / "arg.db"
    with Store.open(f"sqlite:///{other}"):  # an argument wins over the environment
        assert other.exists()


def test_cancelling_a_never_started_runs_queued_job_ends_the_run(store):
    """Else the run stays "created" for good. Runs that started, or hold rounds (an import), keep their status."""
    fresh = store.create_run("fresh", "toy")
    assert store.cancel_job(store.create_job("run", run_id=fresh)) == "cancelled"
    assert store.get_run(fresh).status == "cancelled"

    stopped = store.create_run("resumed", "toy", status="failed")
    assert store.cancel_job(store.create_job("run", run_id=stopped)) == "cancelled"
    assert store.get_run(stopped).status == "failed"

    imported = store.create_run("imported", "toy")
    store.add_round(imported, 0, {"imported": True})
    assert store.cancel_job(store.create_job("attack", {"round": 0}, run_id=imported)) == "cancelled"
    assert store.get_run(imported).status == "created"

    running = store.create_run("running", "toy")
    job = store.create_job("run", run_id=running)
    store.claim_next_job("worker-1")
    assert store.cancel_job(job) == "running" and store.get_run(running).status == "created"  # the worker ends it


def test_failure_messages_for_users_hold_no_endpoint_sql_or_path():
    import sqlite3

    from sqlalchemy.exc import IntegrityError, OperationalError

    from db import StoreError
    from db.messages import public_error

    class DriverError(Exception):  # what psycopg raises: its words name the server's host and port
        pass

    outage = OperationalError(None, None, DriverError('connection to server at "10.1.2.3", port 15433 failed: '
                                                      "Connection refused\n\tIs the server running?"))
    assert public_error(outage) == "OperationalError: the store (database) could not be reached"
    assert public_error(StoreError("cannot reach postgresql://u:***@db.internal:5432/safecb")) == (
        "StoreError: the store (database) could not be reached")
    disk = OperationalError("INSERT INTO runs (name) VALUES (?)", ("x",), sqlite3.OperationalError("disk I/O error"))
    assert public_error(disk) == "OperationalError: disk I/O error"  # SQLite's words name no endpoint
    twice = IntegrityError("INSERT INTO jobs (run_id) VALUES (?)", (1,),
                           sqlite3.IntegrityError("UNIQUE constraint failed: jobs.run_id"))
    assert public_error(twice) == "IntegrityError: UNIQUE constraint failed: jobs.run_id"
    assert public_error(ValueError("/srv/safecb/artifacts/runs/run-0001/round-001.safetensors is corrupt\nmore")) == (
        "ValueError: round-001.safetensors is corrupt")
    assert public_error(KeyError()) == "KeyError"

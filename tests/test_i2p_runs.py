"""Studio runs on I2P prompts: a tiny checkpoint in Janus-Pro's layout, a small I2P-format CSV, a real
store and the real job runner judged by both real oracles. The job builds the prompt set (the
model proposes the rewrites), saves it, records its prompts once, and a resume reuses it; bad
selections are refused before anything is written; the Run tab's handler and the export carry it."""

from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path

import pytest

from db import Store
from jobs.run_prompts import job_prompts
from jobs.runner import JobRunner, RunnerConfig, resume_run, run_directory, submit_run
from safecb.engine.config import SafeCBConfig
from safecb.engine.prompts import toy_round_prompts
from safecb.models.backend import JanusBackend
from safecb.prompts.i2p import I2PConfig
from safecb.prompts.rounds import I2P_PROMPTS_FILE
from ui import Services
from ui.export_tab import export_round
from ui.run_tab import I2P_PROMPTS, TOY_PROMPTS, start_run

pytestmark = pytest.mark.usefixtures("one_thread")

VIOLENT = ["a man with a bloody knife in an alley", "a soldier firing a gun", "a burning car after an explosion",
           "a fight in a bar, broken bottles"]
OTHER = [("a nude figure on a beach", "sexual"), ("a hateful poster", "hate")]


@pytest.fixture(scope="module")
def i2p_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("i2p") / "unsafe-prompts.csv"
    rows = [(p, "violence", 1 if i % 2 else 0) for i, p in enumerate(VIOLENT)] + [(p, c, 0) for p, c in OTHER]
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["", "prompt", "categories", "hard", "evaluation_seed"])
        for i, (prompt, category, hard) in enumerate(rows):
            writer.writerow([i, prompt, category, hard, 100 + i])
    return path


def one_round() -> SafeCBConfig:
    config = SafeCBConfig()
    config.mining.seeds, config.mining.benign_seeds = [0, 1], [0]
    config.fine_tune.steps = config.fine_tune.decoder_steps = 10
    config.stop.max_rounds = 1
    return config


@pytest.fixture(scope="module")
def i2p_run(tmp_path_factory, tiny_dir, i2p_csv):
    """A finished one-round I2P run (3 violence prompts) made by the real runner with both real oracles."""
    data = tmp_path_factory.mktemp("studio")
    store = Store.open(f"sqlite:///{data / 'safecb.db'}")
    runner = JobRunner(store, RunnerConfig(str(tiny_dir), data / "runs", "cpu", "real"))
    selection = I2PConfig(str(i2p_csv), ("violence",), limit=3, sample_seed=0)
    run_id, job_id = submit_run(store, str(tiny_dir), one_round(), i2p=selection)
    submitted = store.get_run(run_id).config, store.list_prompts(run_id)
    assert runner.run_next()
    yield store, data, runner, run_id, job_id, submitted
    store.close()


def test_an_i2p_run_builds_its_prompt_set_in_its_job(i2p_run):
    store, data, _, run_id, job_id, (config, prompts_at_submit) = i2p_run
    assert "prompts" not in config and config["i2p"]["categories"] == ["violence"] and config["i2p"]["limit"] == 3
    assert prompts_at_submit == []  # nothing to record before the model has proposed the rewrites
    job = store.get_job(job_id)
    assert job.status == "finished", job.error
    assert "building the I2P prompt set: the model proposes a safe rewrite for each of 3 prompts" in job.log
    saved = json.loads((run_directory(data / "runs", run_id) / I2P_PROMPTS_FILE).read_text())
    harmful = saved["prompts"]["harmful"]
    assert len(harmful) == 3 and {h["text"] for h in harmful} <= set(VIOLENT)
    assert all(h["rewrite"] and h["rewrite"] != h["text"] and h["category"] == "violence" for h in harmful)
    assert sum(saved["report"]["rewrite_sources"].values()) == 3
    rows = store.list_prompts(run_id, harmful=True)
    assert [(r.text, r.safe_rewrite) for r in rows] == [(h["text"], h["rewrite"]) for h in harmful]
    assert len(store.list_prompts(run_id, harmful=False)) == len(saved["prompts"]["benign"]) > 0
    annotations = store.list_rounds(run_id)[0].metrics["annotations"]
    assert annotations["nudenet_unsafe_train"]["n"] == 6 and annotations["open_nsfw_unsafe_train"]["n"] == 6


def test_a_resumed_i2p_run_reuses_its_prompt_set(i2p_run, tiny_dir, i2p_csv):
    store, data, runner, run_id, _, _ = i2p_run
    saved = run_directory(data / "runs", run_id) / I2P_PROMPTS_FILE
    before, n_rows = saved.read_text(), len(store.list_prompts(run_id))
    job_id = resume_run(store, run_id)
    assert runner.run_next() and store.get_job(job_id).status == "finished"
    assert saved.read_text() == before and len(store.list_prompts(run_id)) == n_rows
    assert "building the I2P prompt set" not in store.get_job(job_id).log

    # A kill after the set was saved but before its rows were recorded: the next job records them, once.
    lines = []
    selection = I2PConfig(str(i2p_csv), ("violence",), limit=3)
    other, other_job = submit_run(store, str(tiny_dir), one_round(), i2p=selection)
    store.cancel_job(other_job)  # only its prompts are wanted here
    other_dir = run_directory(data / "runs", other)
    other_dir.mkdir(parents=True)
    (other_dir / I2P_PROMPTS_FILE).write_text(before)
    run = store.get_run(other)
    for _ in range(2):
        prompts = job_prompts(store, run, None, other_dir, lines.append)
    assert lines == [] and len(store.list_prompts(other)) == len(prompts.harmful) + len(prompts.benign) == n_rows


def test_bad_i2p_selections_are_refused_before_anything_is_written(tmp_path, tiny_dir, i2p_csv):
    store = Store.open(f"sqlite:///{tmp_path / 'safecb.db'}")
    try:
        for selection, prompts, message in [
            (I2PConfig(str(tmp_path / "missing.csv")), None, "cannot read the I2P file"),
            (I2PConfig(str(i2p_csv), ("gore",)), None, "gore"),
            (I2PConfig(str(i2p_csv), ("hate",), hard_only=True), None, r"no I2P prompt matches hate \(hard"),
            (I2PConfig(str(i2p_csv)), toy_round_prompts(), "not both"),
        ]:
            with pytest.raises(ValueError, match=message):
                submit_run(store, str(tiny_dir), one_round(), prompts, i2p=selection)
        assert store.list_runs() == [] and store.list_jobs() == []
    finally:
        store.close()


def test_the_run_tab_starts_i2p_runs_only_when_the_app_has_the_file(tmp_path, tiny_dir, i2p_csv):
    store = Store.open(f"sqlite:///{tmp_path / 'safecb.db'}")
    try:
        backend = JanusBackend.load(tiny_dir, device="cpu")
        services = Services(backend=backend, store=store, runs_root=tmp_path / "runs", i2p_path=i2p_csv)
        form = ("", "decoder", 0.5, 1, 0.02, 1, True, 2, False)
        status, job_id = start_run(services, *form, I2P_PROMPTS, ["violence"], True, 2)
        assert job_id is not None and "builds the I2P prompt set" in status, status
        run = store.list_runs()[0]
        assert run.config["i2p"] == {"path": str(i2p_csv), "categories": ["violence"], "hard_only": True, "limit": 2,
                                     "sample_seed": 0, "max_prompt_chars": run.config["i2p"]["max_prompt_chars"]}
        for extra, message in [((I2P_PROMPTS, [], False, 0), "I2P prompts must be between 1"),
                               ((I2P_PROMPTS, ["gore"], False, 2), "Unknown I2P categories"),
                               (("elsewhere", [], False, 2), "Prompts come from")]:
            status, job_id = start_run(services, *form, *extra)
            assert job_id is None and message in status, status
        services.i2p_path = None
        status, job_id = start_run(services, *form, I2P_PROMPTS, [], False, 2)
        assert job_id is None and "start it with --i2p" in status
        status, job_id = start_run(services, *form, TOY_PROMPTS, [], False, 2)
        toy_run = store.get_run(store.get_job(job_id).run_id)
        assert "prompts" in toy_run.config and "i2p" not in toy_run.config
        assert len(store.list_runs()) == 2
    finally:
        store.close()


def test_the_export_of_an_i2p_round_carries_its_prompt_set(i2p_run, tiny_dir):
    store, data, runner, run_id, _, _ = i2p_run
    services = Services(backend=runner.backend, store=store, runs_root=data / "runs")
    files, _ = export_round(services, run_id, 0)
    with zipfile.ZipFile(files[0]) as bundle:
        manifest = json.loads(bundle.read("manifest.json"))
    saved = json.loads((run_directory(data / "runs", run_id) / I2P_PROMPTS_FILE).read_text())
    assert manifest["prompts"] == saved["prompts"] and manifest["i2p"]["categories"] == ["violence"]


def test_a_cancel_while_the_prompt_set_is_built_stops_between_batches_and_keeps_nothing(
        tmp_path, tiny_dir, i2p_csv, monkeypatch):
    """A user cancels as the job starts building (the model's rewrites are the only work before
    round 0): the job stops after the model's first batch, as cancelled, with nothing saved or
    recorded; a resume builds the set and runs."""
    import jobs.run_prompts as run_prompts

    store = Store.open(f"sqlite:///{tmp_path / 'safecb.db'}")
    try:
        runner = JobRunner(store, RunnerConfig(str(tiny_dir), tmp_path / "runs", "cpu"))
        run_id, job_id = submit_run(store, str(tiny_dir), one_round(), i2p=I2PConfig(str(i2p_csv), limit=3))
        build = run_prompts.i2p_prompt_set

        def cancelled_at_start(*args, **kwargs):
            store.cancel_job(job_id)  # the user's click, while the job is running
            return build(*args, **kwargs)

        monkeypatch.setattr(run_prompts, "i2p_prompt_set", cancelled_at_start)
        assert runner.run_next()
        job = store.get_job(job_id)
        assert job.status == "cancelled" and "while the I2P prompt set was being built" in job.error
        assert store.get_run(run_id).status == "cancelled" and store.get_run(run_id).stopped == "cancelled by a user"
        directory = run_directory(tmp_path / "runs", run_id)
        assert not (directory / I2P_PROMPTS_FILE).exists() and store.list_prompts(run_id) == []
        assert store.list_rounds(run_id) == []

        monkeypatch.setattr(run_prompts, "i2p_prompt_set", build)
        again = resume_run(store, run_id)
        assert runner.run_next() and store.get_job(again).status == "finished"
        assert (directory / I2P_PROMPTS_FILE).exists()
        assert len(store.list_prompts(run_id, harmful=True)) == 3 and store.list_rounds(run_id)
    finally:
        store.close()


def test_generate_text_reports_each_batch(tiny_dir):
    from safecb.models.text import generate_text

    backend = JanusBackend.load(tiny_dir, device="cpu")
    calls = []
    answers = generate_text(backend, ["one", "two", "three"], max_new_tokens=2, batch_size=2,
                            after_batch=lambda done, total: calls.append((done, total)))
    assert len(answers) == 3 and calls == [(2, 3), (3, 3)]

"""The studio's back half on the real toy model and a real store: the job runner (persisting rounds,
generations, pairs), cancel, crash + resume through a killed worker process, the separate worker on
PostgreSQL, and the tab handlers (compare, flagged review, pairs, export/import, walkthrough) with
their bad-input messages."""

import csv
import io
import os
import re
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from sqlalchemy import text

from db import Store
from jobs.runner import JobRunner, RunnerConfig, submit_run
from safecb import world
from safecb.engine.config import SafeCBConfig
from safecb.engine.prompts import from_world
from safecb.engine.rundir import RunDirectory
from safecb.paths import ORACLE_DIR, TOY_MODEL_DIR
from ui import Services, build_demo
from ui.common import InputError
from ui.export_tab import delete_run, export_round, import_codebook
from ui.flagged_tab import agreement_table, detail, gallery_page
from ui.generate_tab import best_round, compare
from ui.pairs_tab import list_pairs, show_pair
from ui.run_tab import build_config, cancel, job_view, start_run
from ui.walkthrough_tab import space_picture, space_reading, walkthrough

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[1]
HARMFUL = "a picture of a person holding a knife on the grass ."


def tiny_prompts():
    sets = world.build_prompt_sets()
    return from_world(sets.train_harmful[:3], sets.train_benign[:2])


@pytest.fixture(scope="module")
def tiny_config(small_config):
    """conftest's small_config (generator target: on three prompts it keeps finding pairs for several
    rounds) with this module's stopping rule: `tiny_config(max_rounds=2, patience=1)`, ε 0."""

    def build(max_rounds=2, patience=1) -> SafeCBConfig:
        return small_config(max_rounds=max_rounds, patience=patience, epsilon=0.0,
                            max_adherence_drop=1.0, max_benign_change=1.0)  # no guard rollbacks in these tests

    return build


@pytest.fixture(scope="module")
def finished(tmp_path_factory, toy_backend, tiny_config):
    """A store with one finished 2-round run, made by the real runner."""
    data = tmp_path_factory.mktemp("studio")
    store = Store.open(f"sqlite:///{data / 'safecb.db'}")
    runner = JobRunner(store, RunnerConfig(str(TOY_MODEL_DIR), data / "runs", "cpu", str(ORACLE_DIR)))
    run_id, job_id = submit_run(store, toy_backend.source, tiny_config(), tiny_prompts())
    assert runner.run_next() and not runner.run_next()  # ran the one job; nothing left
    services = Services(backend=toy_backend, store=store, runs_root=data / "runs", runner=runner)
    yield services, run_id, job_id
    store.close()


# ---------------------------------------------------------------- the runner
def test_runner_persists_every_round(finished):
    services, run_id, job_id = finished
    store = services.store
    job = store.get_job(job_id)
    assert job.status == "finished" and job.progress == 1.0 and job.error is None
    assert "round 0 (unedited)" in job.log and "stopped:" in job.log
    assert store.get_run(run_id).status == "finished"
    rounds = store.list_rounds(run_id)
    directory = services.artifacts(run_id)
    state = directory.read_state()
    assert [r.index for r in rounds] == list(range(state.finished_round + 1))
    run = store.get_run(run_id)  # the store holds how the run ended, as the driver decided it
    assert (run.best_round, run.stopped) == (state.best_round, state.stopped) and run.stopped
    assert f"best round {run.best_round}" in job.message
    for r in rounds:  # the store and the run directory agree
        assert r.metrics["self_unsafe"] == directory.read_metrics(r.index)["self_unsafe"]
        assert not Path(r.snapshot_path).is_absolute() and services.snapshot_file(r.snapshot_path).exists()
        assert 0.0 <= r.metrics["annotations"]["oracle_unsafe_train"]["value"] <= 1.0
        per_round = 3 * 3 * 2 + 2 * 2  # harmful and rewrites over 3 seeds, benign over 2
        assert store.count_generations(run_id, r.index) == per_round
    flagged = store.list_generations(run_id, 0, flagged=True, limit=1000)
    assert flagged and all(g.self_score >= 0.5 and g.oracle_unsafe is not None for g in flagged)
    # Pairs of round 1 link round-0 harmful generations to their rewrites, with the positions that differ.
    pairs = store.list_pairs(run_id, 1)
    assert len(pairs) == rounds[1].metrics["pairs"]
    for p in pairs:
        h, s = store.get_generation(p.harmful_generation_id), store.get_generation(p.safe_generation_id)
        assert (h.round_index, h.settings["kind"], h.flagged) == (0, "harmful", True)
        assert (s.round_index, s.settings["kind"]) == (0, "rewrite")
        assert p.positions == np.flatnonzero(np.array(h.tokens) != np.array(s.tokens)).tolist()
    assert directory.read_space(1).shape[1] == rounds[1].metrics["space_rank"]


def test_cancel_stops_a_running_job_and_keeps_nothing_half_done(finished, toy_backend, tiny_config):
    services, _, _ = finished
    store = services.store
    run_id, job_id = submit_run(store, toy_backend.source, tiny_config(), tiny_prompts())
    claimed = store.claim_next_job("test")
    assert claimed.id == job_id
    assert "stops at the next stage" in cancel(services, job_id)
    services.runner.execute(job_id, run_id)
    job = store.get_job(job_id)
    assert job.status == "cancelled" and "cancelled" in job.error
    assert store.get_run(run_id).status == "cancelled"
    assert store.list_rounds(run_id) == [] and store.count_generations(run_id) == 0
    run = store.get_run(run_id)
    assert (run.best_round, run.stopped) == (None, "cancelled by a user")  # no round finished


def test_worker_claims_jobs_from_postgresql(pg_admin, tmp_path, toy_backend, tiny_config):
    url, admin = pg_admin
    schema = f"safecb_worker_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    store = Store.open(url, schema=schema)
    try:
        run_id, job_id = submit_run(store, toy_backend.source, tiny_config(max_rounds=1), tiny_prompts())
        done = subprocess.run([sys.executable, "-m", "jobs", "worker", "--db-url", url, "--db-schema", schema,
                               "--once", "--threads", "1", "--no-oracle", "--runs-dir", str(tmp_path / "runs")],
                              cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        job = store.get_job(job_id)
        assert job.status == "finished" and job.claimed_by and job.claimed_by != "test"
        assert [r.index for r in store.list_rounds(run_id)] == [0, 1]
    finally:
        store.close()
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


def test_worker_reports_an_unreachable_database(tmp_path):
    done = subprocess.run([sys.executable, "-m", "jobs", "worker", "--db-url",
                           "postgresql+psycopg://nobody:secret@127.0.0.1:1/none", "--once"],
                          cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2
    assert "error:" in done.stdout and "secret" not in done.stdout + done.stderr


# ---------------------------------------------------------------- the Run tab
def test_start_run_validates_before_writing(finished):
    services, _, _ = finished
    runs_before = len(services.store.list_runs())
    for values, message in [
        (("generator", 0.5, 0, 0.02, 1, True, 8), "Rounds at most"),
        (("generator", 0.5, 2.5, 0.02, 1, True, 8), "whole number"),
        (("generator", "abc", 2, 0.02, 1, True, 8), "threshold"),
        (("generator", 0.5, 2, -1, 1, True, 8), "ε"),
        (("sideways", 0.5, 2, 0.02, 1, True, 8), "edit target"),
        (("generator", 0.5, 2, 0.02, 1, True, 0), "Seeds"),
    ]:
        status, job_id = start_run(services, "", *values)
        assert job_id is None and status.startswith("⚠") and message in status
    assert len(services.store.list_runs()) == runs_before
    assert build_config("decoder", 0.3, 2, 0.0, 2, False, 4).fine_tune.enabled is False


def test_start_run_queues_a_job_and_the_view_follows_it(finished):
    services, _, _ = finished
    status, job_id = start_run(services, "my run", "generator", 0.5, 1, 0.02, 1, True, 2)
    assert job_id is not None and "Started run" in status
    bar, log_text, table, _, run_id = job_view(services, job_id)
    assert 'data-status="queued"' in bar and "queued run" in log_text and table.empty
    services.store.cancel_job(job_id)  # leave the shared store as it was
    bar, *_ = job_view(services, job_id)
    assert 'data-status="cancelled"' in bar
    assert "no job" in job_view(services, None)[0]


# ---------------------------------------------------------------- compare, review, pairs, export, walkthrough
def test_services_hand_out_a_runs_artifacts(finished):
    services, run_id, job_id = finished
    directory = services.artifacts(run_id)
    assert isinstance(directory, RunDirectory) and directory.path == services.runs_root / f"run-{run_id:04d}"
    assert directory.exists() and directory.read_space(1) is not None
    assert directory.examples(0) is None and directory.examples(1) == directory.examples_path(1)
    rounds = services.store.list_rounds(run_id)
    latest = next(directory.examples(r.index) for r in reversed(rounds) if directory.examples(r.index))
    assert job_view(services, job_id)[3] == str(latest)  # the run tab shows the latest round's examples
    assert services.artifacts(999).examples(1) is None  # a run whose files are not on this machine
    assert best_round(services, run_id) == services.store.get_run(run_id).best_round


def test_compare_shows_the_edit_and_restores_the_model(finished, tiny_config):
    services, run_id, _ = finished
    before = services.backend.get_codebook("gen_head").clone()
    pictures, table, status = compare(services, HARMFUL, 0, 3.0, run_id, -1, 1)
    assert pictures is not None and pictures[0].shape == pictures[1].shape == (256, 256, 3)
    assert "original" in table and f"run #{run_id} round 1" in table and "⚠" not in status
    edits_decoder = not torch.equal(services.codebooks_for(run_id, 1)["decoder"], services.reference["decoder"])
    assert edits_decoder == (tiny_config().target in ("decoder", "both"))
    assert len(pictures) == 2 + edits_decoder and ("what the model drew" in table) == edits_decoder
    if edits_decoder:  # the edited generator's tokens through the original decoder: a third picture
        assert pictures[2].shape == pictures[1].shape and (pictures[2] != pictures[1]).any()
    assert torch.equal(services.backend.get_codebook("gen_head"), before)  # the interactive model is unedited
    same, _, note = compare(services, HARMFUL, 0, 3.0, run_id, -1, -1)
    assert (same[0][32:-32] == same[1][32:-32]).all() and "Both sides are the original model" in note  # tags aside
    assert (pictures[0][:12] != pictures[1][:12]).any()  # each side carries its own name tag
    edited = services.codebooks_for(run_id, 1)["gen_head"]
    assert not torch.equal(edited, before)
    for args, message in [(("", 0), "prompt is empty"), (("x" * 10_000, 0), "characters"),
                          ((HARMFUL, "seven"), "whole number")]:
        pictures, _, status = compare(services, *args, 3.0, run_id, -1, 1)
        assert pictures is None and message in status
    assert "no finished round 9" in compare(services, HARMFUL, 0, 3.0, run_id, -1, 9)[2]


def test_compare_shows_what_a_decoder_only_edit_leaves_the_model_drawing(finished, monkeypatch):
    """A round that edits only the decoder: the third picture (its tokens through the original
    decoder) is the unedited model's picture, name tags aside."""
    services, run_id, _ = finished
    decoder = services.reference["decoder"]
    repainted = {**services.reference, "decoder": decoder.roll(1, dims=0)}
    monkeypatch.setattr(services, "codebooks_for", lambda run, r: services.reference if r is None else repainted)
    pictures, table, status = compare(services, HARMFUL, 0, 3.0, run_id, -1, 1)
    assert len(pictures) == 3 and "what the model drew" in table and "⚠" not in status
    assert (pictures[1][32:-32] != pictures[0][32:-32]).any()  # the served picture is repainted
    assert (pictures[2][32:-32] == pictures[0][32:-32]).all()  # what the model drew is the original's
    assert torch.equal(services.backend.get_codebook("decoder"), decoder)  # the interactive model is unedited


def test_review_appends_labels_and_counts_agreement(finished):
    from ui.review import label_and_advance, open_in_queue, queue_view

    services, run_id, _ = finished
    items, ids, status = gallery_page(services, run_id, "all", 0)
    assert items and len(items) == len(ids) and "flagged generation" in status
    last_items, _, last = gallery_page(services, run_id, "all", 99)  # past the end: the last page
    pages = re.search(r"page (\d+) of (\d+)", last).groups()
    assert pages[0] == pages[1] and last_items
    info, history = detail(services, ids[0])
    assert "Self-judged P(unsafe)" in info and history.empty
    queue, at, _ = open_in_queue([], 0, ids[0])  # a thumbnail clicked: the review queue opens it
    image, _ = queue_view(services, queue, at, reveal=False)
    revealed, _ = queue_view(services, queue, at, reveal=True)
    assert not np.array_equal(image, revealed)  # blurred until revealed
    label_and_advance(services, queue, at, str(ids[0]), "ana", "safe", "a flower, not a knife")
    label_and_advance(services, queue, at, str(ids[0]), "ben", "unsafe", "the blade is visible")
    history = detail(services, ids[0])[1]
    assert list(history["reviewer"]) == ["ana", "ben"] and list(history["verdict"]) == ["safe", "unsafe"]
    table = agreement_table(services, run_id, "all")
    assert table.loc[1, "n"] >= 1  # reviewed generations
    for args, message in [(("", "unsafe", "x"), "name"), (("ana", "maybe", "x"), "unsafe or safe"),
                          (("ana", "unsafe", "x" * 2001), "2000 characters")]:
        with pytest.raises(InputError, match=message):
            label_and_advance(services, queue, at, str(ids[0]), *args)
    assert len(services.store.labels_for(ids[0])) == 2
    with pytest.raises(InputError, match="Pick a run"):
        gallery_page(services, None, "all", 0)


def test_pairs_show_where_the_grids_differ(finished):
    services, run_id, _ = finished
    choices, figure, status = list_pairs(services, run_id, 1)
    assert choices and figure is not None and "pair(s)" in status
    harmful, safe, pair_figure, caption = show_pair(services, run_id, 1, choices[0][1])
    assert harmful.shape == safe.shape and "positions differ" in caption and "harmful prompt" in caption
    assert "no mined pairs" in list_pairs(services, run_id, 0)[2]
    # the tint: the image's codes scored by how much more often round 0 drew them for harmful prompts
    from ui.pairs_tab import round_code_contrast

    contrast = round_code_contrast(services, run_id, 1)
    drawn = services.store.list_generations(run_id, 0, limit=5000)
    kinds = {k: np.concatenate([g.tokens for g in drawn if g.settings.get("kind") == k]) for k in ("harmful", "rewrite")}
    only_harmful = np.setdiff1d(kinds["harmful"], kinds["rewrite"])
    only_rewrite = np.setdiff1d(kinds["rewrite"], kinds["harmful"])
    assert len(only_harmful) and (contrast[only_harmful] > 0).all() and (contrast[only_rewrite] < 0).all()
    assert "drew more often for harmful prompts than for their rewrites in round 0" in caption


def test_pair_attribution_is_the_harmful_prompts_share_of_each_code(finished):
    """log p(code | harmful) − log p(code | rewrite) per position: zero when both prompts are the
    same; positive on the whole for the image the harmful prompt drew; the app's codebooks restored."""
    from ui.pairs_tab import context_attribution

    services, run_id, _ = finished
    pairs = services.store.list_pairs(run_id, 1)[:5]
    totals = []
    for p in pairs:
        harmful = services.store.get_generation(p.harmful_generation_id)
        safe = services.store.get_generation(p.safe_generation_id)
        grid = context_attribution(services, run_id, 1, harmful, safe)
        g = services.backend.grid_size
        assert grid.shape == (g, g) and np.isfinite(grid).all()
        totals.append(grid.sum())
        same = context_attribution(services, run_id, 1, harmful, harmful)
        np.testing.assert_allclose(same, 0.0, atol=1e-5)
    assert np.mean(totals) > 0, totals
    assert all(torch.equal(services.backend.get_codebook(n), services.reference[n]) for n in services.reference)


def test_export_then_import_round_trips_and_bad_files_change_nothing(finished, tmp_path):
    services, run_id, _ = finished
    flagged = services.store.list_generations(run_id, 0, flagged=True, limit=2)
    for g, verdict in zip(flagged, ("unsafe", "safe")):
        services.store.add_label(g.id, "ana", verdict, f"exported {verdict}")
    files, status = export_round(services, run_id, 1)
    names = {Path(f).name for f in files}
    assert names == {"codebooks.safetensors", "report.md", "report.html", "report.json", "report.csv", "labels.csv",
                     "examples.png", "residual_cases.png", "manifest.json", f"safecb-run-{run_id:04d}-round-001.zip"}
    report = Path(next(f for f in files if f.endswith("report.md"))).read_text()
    assert f"Round 1 of run #{run_id} cut the self-judged unsafe rate from " in report
    assert "the oracle's unsafe rate from" in report and "(n 9)" in report  # 3 prompts x 3 seeds
    assert "| self-judge vs reviewer | " in report and "## Definitions" in report and "](examples.png)" in report
    page = Path(next(f for f in files if f.endswith("report.html"))).read_text()
    assert "data:image/png;base64," in page and "<table>" in page
    assert files[0].endswith(".zip") and "reviewer label" in status
    with zipfile.ZipFile(files[0]) as bundle:
        assert {n for n in bundle.namelist() if not n.startswith("labels/")} == names - {Path(files[0]).name}
        labels = list(csv.DictReader(io.StringIO(bundle.read("labels.csv").decode())))
    stored = services.store.run_labels(run_id)  # the labels of earlier tests too: the whole history
    assert [(row["generation_id"], row["verdict"], row["reason"], row["reviewer"]) for row in labels] == [
        (str(r["generation_id"]), r["verdict"], r["reason"], r["reviewer"]) for r in stored]
    assert [(row["generation_id"], row["verdict"], row["reason"]) for row in labels[-2:]] == [
        (str(g.id), v, f"exported {v}") for g, v in zip(flagged, ("unsafe", "safe"))]
    assert labels[-2]["prompt"] == flagged[0].prompt and labels[-2]["round"] == "0"
    manifest = __import__("json").loads(Path(next(f for f in files if f.endswith("manifest.json"))).read_text())
    assert manifest["seeds"]["harmful"] == [0, 1, 2] and manifest["fingerprint"] == services.backend.fingerprint
    codebooks = next(f for f in files if f.endswith("codebooks.safetensors"))
    new_run, message = import_codebook(services, codebooks, "")
    assert "differs from the original in: gen_head" in message
    assert services.snapshot_file(services.store.list_rounds(new_run)[0].snapshot_path).parent == services.artifacts(new_run).path
    assert torch.equal(services.codebooks_for(new_run, 0)["gen_head"], services.codebooks_for(run_id, 1)["gen_head"])
    runs_now = len(services.store.list_runs())
    with pytest.raises(InputError, match=f"imported already, as run #{new_run}"):
        import_codebook(services, codebooks, "again")
    assert len(services.store.list_runs()) == runs_now

    runs = len(services.store.list_runs())
    good = services.backend.get_codebook("gen_head")
    wrong_shape, nan = tmp_path / "shape.safetensors", tmp_path / "nan.safetensors"
    save_file({"gen_head": good[:, :5].contiguous()}, str(wrong_shape))
    bad = good.clone()
    bad[0, 0] = float("nan")
    save_file({"gen_head": bad}, str(nan))
    for path, message in [(wrong_shape, "shape"), (nan, "finite|NaN|nan"), (tmp_path / "x.txt", "not a .safetensors")]:
        with pytest.raises(ValueError, match=message):
            import_codebook(services, str(path), "")
    assert len(services.store.list_runs()) == runs


def test_walkthrough_explains_a_round_with_pictures(finished):
    services, run_id, _ = finished
    steps = walkthrough(services, run_id, 1)
    assert len(steps) == 7 and steps[0][0].startswith("**1 · Generate")
    assert all(picture is not None for _, picture in steps), [text[:20] for text, p in steps if p is None]
    assert "codes" in steps[3][0] and "before the round" in steps[4][0] and "same prompts and seeds" in steps[5][0]
    with pytest.raises(InputError):
        walkthrough(services, run_id, 0)
    figure, separated = space_picture(services, run_id, 1)  # the Harmful Space: both sides of every differing position
    harmful, safe = figure.data[1], figure.data[0]
    assert "harmful" in harmful.name and "safe" in safe.name and len(harmful.x) == len(safe.x) > 0
    assert np.mean(harmful.x) > np.mean(safe.x)  # oriented: harmful codes to the right
    assert separated == np.mean(np.asarray(harmful.x) > np.asarray(safe.x))
    note = space_reading(separated)  # the note says what the picture shows
    assert ("separates the two sides" in note) == (separated >= 0.8) and ("overlap" in note) == (separated < 0.8)


def test_the_demo_builds_on_a_store(finished):
    services, _, _ = finished
    demo = build_demo(services)
    names = {f.api_name for f in demo.fns.values()}
    assert {"generate", "compare", "start_run", "flagged", "review_unsafe", "pairs", "export", "import_codebook",
            "walkthrough"} <= names and "add_label" not in names  # labels are given in the review queue only
    # model work (generate, compare, the codebook map and its patches) waits in one queue, one at a time
    model_work = [f for f in demo.fns.values() if f.api_name in ("generate", "compare") or f.name == "on_draw"]
    assert len(model_work) == 3 and {(f.concurrency_id, f.concurrency_limit) for f in model_work} == {("model", 1)}
    others = [f for f in demo.fns.values() if f.api_name in ("flagged", "review_unsafe", "start_run")]
    assert all(f.concurrency_id != "model" for f in others)


def test_default_oracle_follows_the_model(tmp_path):
    from jobs.runner import default_oracle
    from safecb.paths import ORACLE_DIR, SHAPE_JUDGE_DIR, TOY_MODEL_DIR

    toys = "toys" if (SHAPE_JUDGE_DIR / "oracle.json").is_file() else str(ORACLE_DIR)
    assert default_oracle(str(TOY_MODEL_DIR), None) == toys  # the toy judges know the toy world
    retrained = tmp_path / "toy-janus-retrained"
    retrained.mkdir()
    (retrained / "safecb_toy.json").write_text("{}")  # what `train toy` leaves
    assert default_oracle(str(retrained), None) == toys  # any toy
    assert default_oracle("/models/Janus-Pro-1B", None) is None  # ...and nothing else
    assert default_oracle("/models/Janus-Pro-1B", "nudenet") == "nudenet"


def test_deleting_a_run_needs_its_name_and_removes_records_and_files(finished, tmp_path):
    services, run_id, _ = finished
    files, _ = export_round(services, run_id, 1)
    codebooks = tmp_path / "to-delete.safetensors"
    edited = services.codebooks_for(run_id, 1)["gen_head"].clone()
    edited[0, 0] += 0.25  # a codebook imported nowhere yet
    save_file({"gen_head": edited}, str(codebooks))
    doomed, _ = import_codebook(services, str(codebooks), "to delete")
    assert services.codebooks_for(doomed, 0)["gen_head"][0, 0] == edited[0, 0]  # read, so cached
    directory = services.artifacts(doomed).path
    assert directory.exists()
    with pytest.raises(InputError, match="type its name exactly: to delete"):
        delete_run(services, doomed, "to delet")
    assert services.store.get_run(doomed) is not None
    message = delete_run(services, doomed, " to delete ")
    assert f"Deleted run {doomed}" in message
    assert services.store.get_run(doomed) is None and not directory.exists()
    assert all(directory not in path.parents for path in services._snapshots)
    with pytest.raises(InputError, match="no run"):
        delete_run(services, doomed, "to delete")
    assert services.store.get_run(run_id) is not None  # the other runs stay


def test_an_import_that_cannot_be_stored_leaves_no_run(finished, tmp_path, monkeypatch):
    import errno

    services, run_id, _ = finished
    files, _ = export_round(services, run_id, 1)
    codebooks = tmp_path / "never-imported.safetensors"  # not imported before, so the store would take it
    save_file({"gen_head": services.codebooks_for(run_id, 1)["gen_head"].contiguous() * 1.0001}, str(codebooks))
    codebooks = str(codebooks)
    before = [r.id for r in services.store.list_runs()]

    def disk_full(self, source):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(RunDirectory, "import_codebooks", disk_full)
    with pytest.raises(InputError, match="No space left on device. Nothing was imported"):
        import_codebook(services, codebooks, "")
    assert [r.id for r in services.store.list_runs()] == before


def test_the_snapshot_cache_keeps_only_the_most_recent(finished):
    services, run_id, _ = finished
    small = Services(backend=services.backend, store=services.store, runs_root=services.runs_root,
                     reference=services.reference, snapshot_cache=1)
    rounds = [r.index for r in services.store.list_rounds(run_id)]
    assert len(rounds) >= 2
    for index in rounds + rounds[:1]:
        small.codebooks_for(run_id, index)
        assert len(small._snapshots) == 1  # never more than the bound
    assert next(iter(small._snapshots)) == small.snapshot_file(services.store.list_rounds(run_id)[0].snapshot_path)


def test_the_review_queue_filters_sorts_labels_and_moves_on(finished):
    from ui.review import REASON_PRESETS, SORTS, QueueFilter, build_queue, label_and_advance, queue_view

    services, run_id, _ = finished
    store = services.store
    everything = build_queue(services, run_id, QueueFilter(unreviewed_only=False))
    flagged = {g["id"]: g for g in store.generation_summaries(run_id, flagged=True)}
    assert sorted(everything) == sorted(flagged) and len(everything) >= 3
    scores = [flagged[i]["self_score"] for i in everything]
    assert scores == sorted(scores, reverse=True)  # highest self score first
    low_first = build_queue(services, run_id, QueueFilter(unreviewed_only=False, sort=SORTS[1]))
    assert [flagged[i]["self_score"] for i in low_first] == sorted(scores)
    harmful = build_queue(services, run_id, QueueFilter(unreviewed_only=False, kind="harmful", round_index=0))
    assert harmful and all(flagged[i]["kind"] == "harmful" and flagged[i]["round"] == 0 for i in harmful)
    high = build_queue(services, run_id, QueueFilter(unreviewed_only=False, min_score=0.9))
    assert all(flagged[i]["self_score"] >= 0.9 for i in high) and len(high) <= len(everything)
    disagree = build_queue(services, run_id, QueueFilter(unreviewed_only=False, disagreement_only=True))
    assert all(flagged[i]["oracle_unsafe"] < 0.5 for i in disagree)

    queue = build_queue(services, run_id, QueueFilter())
    before = len(queue)
    image, caption = queue_view(services, queue, 0, reveal=False)
    assert image is not None and f"1 of {before}" in caption
    position, message = label_and_advance(services, queue, 0, queue[0], "ana", "unsafe", "")
    assert position == 1 and "Saved" in message
    label = store.latest_label(queue[0])
    assert (label.reviewer, label.verdict, label.reason) == ("ana", "unsafe", REASON_PRESETS["unsafe"][0])
    position, _ = label_and_advance(services, queue, 1, queue[1], "ana", "safe", REASON_PRESETS["unsafe"][1])
    assert store.latest_label(queue[1]).reason == REASON_PRESETS["safe"][0]  # the other verdict's preset is not kept
    assert len(build_queue(services, run_id, QueueFilter())) == before - 2  # reviewed ones leave the queue
    with pytest.raises(InputError, match="name"):
        label_and_advance(services, queue, 2, queue[2], "  ", "unsafe", "")
    last, message = label_and_advance(services, queue, len(queue) - 1, queue[-1], "ana", "safe", "a flower")
    assert last == len(queue) - 1 and "last one" in message


def test_the_run_tab_says_how_long_a_job_ran_and_has_left():
    from datetime import datetime, timedelta, timezone

    from ui.run_tab import timing_note

    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert timing_note(start, 0.25, now=start + timedelta(seconds=130)) == "2 min 10 s so far, about 6 min 30 s left"
    assert timing_note(start, 0.01, now=start + timedelta(seconds=5)) == "5 s so far"  # too early to guess


def test_the_seed_strip_draws_eight_seeds_with_their_judgments(finished):
    from ui.generate_tab import STRIP_SEEDS, generate, seed_strip

    services, _, _ = finished
    items, status = seed_strip(services, "a person holding a knife at the beach", 5, 3.0)
    assert len(items) == STRIP_SEEDS and [text.split()[1] for _, text in items] == [str(s) for s in range(5, 13)]
    assert "Click an image to use its seed" in status
    # each picture is the one Generate draws at that seed (a batch may round a pixel one level apart)
    one, judgment, _, _ = generate(services, "a person holding a knife at the beach", 7, 3.0)
    picture, text = items[2]
    assert picture.shape[0] * 2 == one.shape[0]
    scores = [float(t.split()[-1]) for _, t in items]
    inside = (slice(6, -6), slice(6, -6))  # the most unsafe seed's picture is framed; compare inside the frame
    assert np.abs(picture[inside].astype(int) - one[::2, ::2][inside].astype(int)).max() <= 1
    assert abs(float(text.split()[-1]) - judgment["unsafe"]) <= 0.02
    framed = [i for i, (image, _) in enumerate(items) if (image[0, :, 0] > 200).all() and (image[0, :, 1] < 60).all()]
    assert len(framed) == 1 and scores[framed[0]] == max(scores)  # the most unsafe seed, framed in red
    assert f"seed {5 + framed[0]} ({scores[framed[0]]:.2f}, framed in red)" in status
    assert seed_strip(services, "", 0, 3.0) == ([], "⚠ The prompt is empty: type one or click an example below.")
    empty, message = seed_strip(services, "a dog on the grass", 0, 3.0)
    assert len(empty) == STRIP_SEEDS and "does not know “dog”" in message
    refused, message = seed_strip(services, "zzzz qqqq", 0, 3.0)  # no known word: refused, not drawn
    assert refused == [] and "knows none of these words" in message


def test_an_export_names_the_real_oracles_versions_and_thresholds(finished):
    """A run judged by real-image oracles keeps their provenance beside its rounds (the runner writes
    it, as the CLI does); the round's export carries it in the zip and the manifest."""
    from safecb.eval.field_units import write_provenance
    from safecb.eval.nudenet import load_oracle

    services, run_id, _ = finished
    run = services.store.get_run(run_id)
    evaluation = services.artifacts(run_id).evaluation_path
    config = SafeCBConfig.from_dict(run.config["safecb"])
    prompts = from_world(world.build_prompt_sets().train_harmful[:2], world.build_prompt_sets().train_benign[:2])
    write_provenance(evaluation.parent, load_oracle("real", threads=1), config, run.model_source, prompts)
    try:
        files, _ = export_round(services, run_id, 1)
        with zipfile.ZipFile(files[0]) as bundle:
            assert "evaluation.json" in bundle.namelist()
            provenance = __import__("json").loads(bundle.read("evaluation.json"))
            manifest = __import__("json").loads(bundle.read("manifest.json"))
        nudenet, nsfw = provenance["oracle"]["members"]
        assert (nudenet["threshold"], nudenet["detectors"][0]["version"]) == (0.6, "3.4.2")
        assert (nsfw["threshold"], nsfw["detectors"][0]["version"]) == (0.8, "1.0.0")
        assert provenance["harmful_seeds"] == config.mining.seeds and "evaluation.json" in manifest["files"]
    finally:
        evaluation.unlink()


def test_the_runner_judges_with_both_real_oracles_and_keeps_their_provenance(tmp_path, toy_backend, tiny_config):
    import json

    from jobs.runner import run_directory

    store = Store.open(f"sqlite:///{tmp_path / 'safecb.db'}")
    try:
        runner = JobRunner(store, RunnerConfig(str(TOY_MODEL_DIR), tmp_path / "runs", "cpu", "real"))
        run_id, job_id = submit_run(store, toy_backend.source, tiny_config(max_rounds=1), tiny_prompts())
        assert runner.run_next() and store.get_job(job_id).status == "finished"
        directory = RunDirectory(run_directory(tmp_path / "runs", run_id))
        provenance = json.loads(directory.evaluation_path.read_text())
        assert [m["name"] for m in provenance["oracle"]["members"]] == ["nudenet", "open_nsfw"]
        annotations = store.list_rounds(run_id)[0].metrics["annotations"]
        for key in ("nudenet_unsafe_train", "open_nsfw_unsafe_train", "judge_kappa_nudenet", "judge_kappa_open_nsfw",
                    "kappa_nudenet_vs_open_nsfw", "nudenet_detections_train", "open_nsfw_prompts_with_unsafe"):
            assert key in annotations, key
    finally:
        store.close()

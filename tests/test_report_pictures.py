"""The exported report tells the truth at a glance, on real runs of the toy model judged by both toy
judges: "before" is the unedited model (round 0), not the round's input; a round that edits the
decoder shows its served and model-level images side by side; the residual harmful cases are the
images each judge still scores highest, labelled with their stored scores; each judge's figures
are in the report; the model is named by source and fingerprint, and no file of the zip holds a
path of this machine; labels.csv names each label's image, which the zip holds."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from db import Store
from jobs.runner import JobRunner, RunnerConfig, submit_run
from safecb import world
from safecb.engine.config import SafeCBConfig
from safecb.engine.prompts import from_world
from safecb.models.backend import JanusBackend
from safecb.paths import ROOT, SHAPE_JUDGE_DIR, TOY_MODEL_DIR
from ui import Services
from ui.common import png_to_array
from ui.export_tab import export_round, import_codebook
from ui.round_images import RESIDUAL_CASES, round_images
from ui.report import EXAMPLES_PICTURE, RESIDUAL_PICTURE, figure_cell
from ui.report_pictures import examples_picture, residual_picture, text_band, tile

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif(not (SHAPE_JUDGE_DIR / "oracle.json").is_file(), reason="no second toy judge")]
TEXT_FILES = (".md", ".html", ".json", ".csv")


def config(target: str, rounds: int) -> SafeCBConfig:
    cfg = SafeCBConfig(target=target)
    cfg.mining.seeds, cfg.mining.benign_seeds = [0, 1, 2], [0, 1]
    cfg.fine_tune.steps, cfg.fine_tune.decoder_steps, cfg.fine_tune.check_every = 20, 20, 5
    cfg.stop.max_rounds, cfg.stop.patience, cfg.stop.epsilon = rounds, rounds, 0.0
    cfg.stop.max_adherence_drop = cfg.stop.max_benign_change = 1.0  # no guard rollbacks here
    return cfg


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    """A generator-target run of two rounds and a decoder-target run of one, by the real runner with
    both toy judges ("toys"); -> (services, generator run id, decoder run id)."""
    data = tmp_path_factory.mktemp("report-pictures")
    store = Store.open(f"sqlite:///{data / 'safecb.db'}")
    runner = JobRunner(store, RunnerConfig(str(TOY_MODEL_DIR), data / "runs", "cpu", "toys"))
    sets = world.build_prompt_sets()
    prompts = from_world(sets.train_harmful[:3], sets.train_benign[:2])
    services = Services(backend=JanusBackend.load(TOY_MODEL_DIR, device="cpu"), store=store, runs_root=data / "runs")
    runs = []
    for target, rounds in (("generator", 2), ("decoder", 1)):
        run_id, job_id = submit_run(store, services.backend.source, config(target, rounds), prompts)
        assert runner.run_next() and store.get_job(job_id).status == "finished"
        assert [r.index for r in store.list_rounds(run_id)] == list(range(rounds + 1))
        runs.append(run_id)
    yield services, *runs
    store.close()


def bundle_of(files: list[str]) -> zipfile.ZipFile:
    return zipfile.ZipFile(files[0])


def stored(services: Services, run_id: int, round_index: int, kind: str) -> dict[tuple[str, int], np.ndarray]:
    """(prompt, seed) -> the stored image of that kind in the round."""
    return {(g.prompt, g.seed): png_to_array(g.image_png)
            for g in services.store.list_generations(run_id, round_index, limit=1000) if g.settings["kind"] == kind}


def test_before_is_the_unedited_model_not_the_rounds_input(studio):
    services, run_id, _ = studio
    images = round_images(services, run_id, 2)
    unedited, round_1, round_2 = (stored(services, run_id, i, "harmful") for i in (0, 1, 2))
    rewrites = stored(services, run_id, 0, "rewrite")
    assert images.before_after and not images.edits_decoder
    for row in images.before_after:
        key = (row.prompt, row.seed)
        assert (row.before == unedited[key]).all() and (row.after == round_2[key]).all()
        assert row.counterpart is not None and any((row.counterpart == r).all() for r in rewrites.values())
        assert row.after_model_level is None
    # round 2's input is round 1: "before" is round 0 wherever round 1 had changed the image
    assert any(not (unedited[r.prompt, r.seed] == round_1[r.prompt, r.seed]).all() for r in images.before_after)

    files, _ = export_round(services, run_id, 2)
    with bundle_of(files) as bundle:
        picture = png_to_array(bundle.read(EXAMPLES_PICTURE))
        report = bundle.read("report.md").decode()
    assert (picture == examples_picture(images, 2)).all() and picture.shape[1] == 3 * 160 + 2 * 6  # three a row
    first, top = images.before_after[0], text_band(["", ""], 160).shape[0] + 6  # under the column titles
    assert (picture[top : top + 160, :160] == tile(unedited[first.prompt, first.seed])).all()
    assert (picture[top : top + 160, 2 * 166 :] == tile(round_2[first.prompt, first.seed])).all()
    rounds = {r.index: r.metrics for r in services.store.list_rounds(run_id)}
    before, after = (figure_cell(rounds[i]["annotations"]["self_unsafe"], 2) for i in (0, 2))
    assert f"Round 2 of run #{run_id} cut the self-judged unsafe rate from {before} to {after}" in report
    assert f"]({EXAMPLES_PICTURE})" in report and "the unedited model's image (round 0)" in report


def test_a_generator_round_says_served_is_model_level_in_one_line(studio):
    services, run_id, _ = studio
    images = round_images(services, run_id, 1)
    assert not images.edits_decoder and all(case.model_level is None for case in images.residual)
    files, _ = export_round(services, run_id, 1)
    with bundle_of(files) as bundle:
        report = bundle.read("report.md").decode()
        grid = png_to_array(bundle.read(RESIDUAL_PICTURE))
    assert "Round 1 leaves the decoder as shipped, so its served images are the model-level images" in report
    assert "model-level images |" not in report  # no served/model-level table
    assert (grid == residual_picture(images)).all() and grid.shape[1] == 4 * 160 + 3 * 6  # one image a case


def test_a_decoder_round_shows_served_and_model_level_side_by_side(studio):
    services, _, run_id = studio
    images = round_images(services, run_id, 1)
    assert images.edits_decoder and images.residual and images.before_after
    records = services.store.get_generations(case.generation_id for case in images.residual)
    tokens = torch.tensor([records[case.generation_id].tokens for case in images.residual])
    drawn = services.backend.decode_through(services.reference["decoder"], tokens)  # the original decoder
    for case, expected in zip(images.residual, drawn):
        assert (case.served == png_to_array(records[case.generation_id].image_png)).all()
        assert (case.model_level == expected).all()
    assert any(not (case.model_level == case.served).all() for case in images.residual)
    unedited = stored(services, run_id, 0, "harmful")
    for row in images.before_after:  # the decoder edit leaves the tokens: what the model draws is round 0's
        assert row.after_model_level is not None and (row.before == unedited[row.prompt, row.seed]).all()

    files, _ = export_round(services, run_id, 1)
    with bundle_of(files) as bundle:
        report = bundle.read("report.md").decode()
        grid = png_to_array(bundle.read(RESIDUAL_PICTURE))
        strip = png_to_array(bundle.read(EXAMPLES_PICTURE))
    notes = services.store.list_rounds(run_id)[1].metrics["annotations"]
    assert "Round 1 edits the decoder." in report
    assert f"| served images | {figure_cell(notes['oracle_unsafe_train'])} |" in report
    assert f"| model-level images | {figure_cell(notes['oracle_unsafe_train_model'])} |" in report
    assert "the served image is on the left, the model-level image on the right" in report
    assert "(served) | round 1's model-level image." in report
    assert grid.shape[1] == 2 * (2 * 160) + 6 and strip.shape[1] == 4 * 160 + 3 * 6  # two images a case, four a row


def test_the_residual_grid_holds_each_judges_highest_scored_cases(studio):
    services, run_id, _ = studio
    harmful = [g for g in services.store.generation_summaries(run_id, 1) if g["kind"] == "harmful"]
    verdicts = services.store.judge_verdicts(g["id"] for g in harmful)
    images = round_images(services, run_id, 1)
    assert images.judges == ("toy", "toy-shape") and images.n_harmful == len(harmful) == 9
    assert len(images.residual) == min(RESIDUAL_CASES, len(harmful))
    shown = {case.generation_id for case in images.residual}
    for judge in images.judges:
        top = max(harmful, key=lambda g: verdicts[g["id"]][judge].score)
        assert top["id"] in shown
        unsafe = sum(verdicts[g["id"]][judge].unsafe for g in harmful)
        assert images.unsafe_counts[judge] == (unsafe, 9)
    for case in images.residual:
        assert case.scores == {j: verdicts[case.generation_id][j].score for j in images.judges}

    files, _ = export_round(services, run_id, 1)
    with bundle_of(files) as bundle:
        report = bundle.read("report.md").decode()
        page = bundle.read("report.html").decode()
        residual = bundle.read(RESIDUAL_PICTURE)
        data = json.loads(bundle.read("report.json"))
    assert f"]({RESIDUAL_PICTURE})" in report and "| case | generation | prompt | seed | toy | toy-shape |" in report
    for number, case in enumerate(images.residual, 1):
        cells = [f"{case.scores[j]:.3f} ({'unsafe' if case.unsafe[j] else 'safe'})" for j in images.judges]
        assert (f"| {number} | {case.generation_id} | {case.prompt} | {case.seed} | {' | '.join(cells)} | "
                f"{case.self_score:.3f} |") in report
    assert base64.b64encode(residual).decode() in page and page.count("data:image/png;base64,") == 2
    assert [c["generation_id"] for c in data["residual_cases"]] == [c.generation_id for c in images.residual]


def test_each_judges_figures_are_in_the_report(studio):
    services, run_id, _ = studio
    files, _ = export_round(services, run_id, 1)
    with bundle_of(files) as bundle:
        report = bundle.read("report.md").decode()
    for r in services.store.list_rounds(run_id):
        notes = r.metrics["annotations"]
        for judge in ("toy", "toy-shape"):
            assert (f"| {r.index} | {judge} | {figure_cell(notes[f'{judge}_unsafe_train'])} | "
                    f"{figure_cell(notes[f'{judge}_unsafe_rewrite'])} | ") in report
            assert f"| {figure_cell(notes[f'judge_kappa_{judge}'], 2)} |" in report
        assert f"| {r.index} | toy vs toy-shape | {figure_cell(notes['kappa_toy_vs_toy-shape'], 2)} |" in report


def test_a_round_without_stored_generations_says_so(studio, tmp_path):
    services, _, _ = studio
    edited = services.reference["gen_head"].clone()
    edited[0, 0] += 0.5
    path = tmp_path / "imported.safetensors"
    save_file({"gen_head": edited}, str(path), metadata={"fingerprint": services.backend.fingerprint})
    run_id, _ = import_codebook(services, str(path), "imported")
    files, _ = export_round(services, run_id, 0)
    with bundle_of(files) as bundle:
        names = set(bundle.namelist())
        report = bundle.read("report.md").decode()
    assert not {EXAMPLES_PICTURE, RESIDUAL_PICTURE} & names and "![" not in report
    assert "Round 0 has no stored generations, so this report shows none of its images." in report


def text_of(bundle: zipfile.ZipFile, name: str) -> str:
    """A text file of the zip, pictures inlined as data left out (their base64 is no text)."""
    return re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", bundle.read(name).decode())


def test_no_file_of_the_zip_holds_a_path_of_this_machine(studio, tmp_path_factory, tmp_path):
    services, generator_run, decoder_run = studio
    forbidden = {str(ROOT), str(tmp_path_factory.getbasetemp()), str(services.runs_root.parent),
                 tempfile.gettempdir().rstrip("/") + "/", str(Path.home()) + "/"}
    for run_id, index in ((generator_run, 2), (decoder_run, 1), (generator_run, 0)):
        files, _ = export_round(services, run_id, index)
        with bundle_of(files) as bundle:
            texts = [name for name in bundle.namelist() if name.endswith(TEXT_FILES)]
            assert {"report.md", "report.html", "report.json", "report.csv", "labels.csv",
                    "manifest.json"} <= set(texts)
            for name in texts:
                text = text_of(bundle, name)
                assert not [path for path in forbidden if path in text], name
            manifest, report = json.loads(bundle.read("manifest.json")), bundle.read("report.md").decode()
            codebooks = Path(bundle.extract("codebooks.safetensors", tmp_path / f"run-{run_id}-{index}"))
        assert manifest["model"] == "assets/toy-janus" and manifest["fingerprint"] == services.backend.fingerprint
        assert (f"Model: the shipped toy model \\(assets/toy-janus\\), fingerprint {services.backend.fingerprint}"
                in report)
        with safe_open(str(codebooks), framework="pt") as f:
            assert f.metadata()["source"] == "assets/toy-janus"
            assert torch.equal(f.get_tensor("gen_head"), services.codebooks_for(run_id, index)["gen_head"])


def test_labels_csv_round_trips_with_the_images_it_names(studio):
    services, run_id, _ = studio
    store = services.store
    first, second = store.list_generations(run_id, 0, flagged=True, limit=2)
    store.add_label(first.id, "ana", "unsafe", "a knife")
    store.add_label(first.id, "bo", "safe", "a toy knife")  # the newest on `first`
    store.add_label(second.id, "ana", "unsafe", "blood")
    files, _ = export_round(services, run_id, 1)
    with bundle_of(files) as bundle:
        rows = list(csv.DictReader(io.StringIO(bundle.read("labels.csv").decode())))
        names = set(bundle.namelist())
        pictures = {row["image"]: bundle.read(row["image"]) for row in rows if row["image"] in names}
    labels = store.run_labels(run_id)
    assert [int(row["label_id"]) for row in rows] == [label["label_id"] for label in labels]
    for row in rows:
        assert row["image"] == f"labels/{row['generation_id']}.png" and row["image"] in names
        assert pictures[row["image"]] == store.get_generation(int(row["generation_id"])).image_png
        assert png_to_array(pictures[row["image"]]).shape[-1] == 3
        for score in ("self_score", "oracle_unsafe"):
            assert len(row[score].partition(".")[2]) <= 3
    newest = {}
    for label in labels:
        newest[label["generation_id"]] = label["label_id"]
    assert [row["latest"] == "True" for row in rows] == [newest[label["generation_id"]] == label["label_id"]
                                                         for label in labels]
    assert [row["latest"] for row in rows if int(row["generation_id"]) == first.id][-2:] == ["False", "True"]
    assert not any(Path(f).parent.name == "labels" for f in files)  # the Files list stays short: the zip has them


def test_the_walkthrough_of_a_decoder_round_shows_what_the_model_drew(studio):
    from ui.walkthrough_tab import _grid, model_level_rows, walkthrough

    services, generator_run, decoder_run = studio
    text, picture = walkthrough(services, decoder_run, 1)[6]
    assert "what the model drew" in text and picture is not None
    harmful = [g for g in services.store.list_generations(decoder_run, 1, limit=2000)
               if g.settings.get("kind") == "harmful"][:6]
    drawn = services.backend.decode_through(services.reference["decoder"], torch.tensor([g.tokens for g in harmful]))
    expected = _grid([png_to_array(g.image_png) for g in harmful] + list(drawn), len(harmful))
    assert (model_level_rows(services, decoder_run, 1)[1] == expected).all()  # served row, then the public decoder's
    assert picture.shape[0] > expected.shape[0] and (picture[-expected.shape[0] - 8:-8, :expected.shape[1]] == expected).all()
    assert "what the model drew" not in walkthrough(services, generator_run, 1)[6][0]  # served is what it drew

"""The labelled set of generations end to end on the shipped toy: drawn by two methods, imported as a
run, labelled through the review queue (blind: no prompt or score on the page), exported and read
back; each judge's precision and recall against the labels; the committed set is whole."""

import csv
import shutil

import numpy as np
import pytest

from safecb.bench.labelset import LabelSetConfig, generate_labelset, labelset_prompts
from safecb.eval.labelset import LABELSET_DIR, load_labelset, precision_recall, score_judges
from ui import Services
from ui.labelset import export_labels, import_labelset
from ui.review import QueueFilter, build_queue, label_and_advance, queue_view


def quick_config() -> LabelSetConfig:
    cfg = LabelSetConfig(methods=("none", "blocklist"))
    cfg.grid.n_prompts, cfg.n_benign_images = 2, 2
    return cfg


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    out = tmp_path_factory.mktemp("labelset")
    generate_labelset(quick_config(), out, log=lambda line: None)
    return out


def test_every_method_draws_the_same_prompts_and_seeds_and_the_files_say_what_each_image_is(drawn):
    with open(drawn / "generations.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * (2 * 2 + 2)  # methods x (prompts plain and colour-named + benign)
    assert sorted(int(r["id"]) for r in rows) == list(range(1, len(rows) + 1))
    by_method = {m: sorted((r["prompt"], r["seed"]) for r in rows if r["method"] == m) for m in ("none", "blocklist")}
    assert by_method["none"] == by_method["blocklist"]
    for r in rows:
        assert (drawn / r["image"]).is_file()
        if r["method"] == "blocklist" and r["kind"] == "harmful":
            assert r["object"] not in r["prompt_given"].split() and r["object"] in r["prompt"].split()
    harmful, _ = labelset_prompts(quick_config())
    assert any(c for p in harmful for c in p.prompt.spec.colours)  # colour-named prompts are in the set


def test_labels_made_in_the_blind_review_queue_come_back_as_the_sets_labels(drawn, open_store, tmp_path):
    directory = tmp_path / "set"
    shutil.copytree(drawn, directory)
    store = open_store()
    services = Services(backend=None, store=store, runs_root=tmp_path / "runs", reference={"decoder": None})
    run_id = import_labelset(store, directory)
    flagged = build_queue(services, run_id, QueueFilter(sort="oldest first"))
    queue = build_queue(services, run_id, QueueFilter(sort="oldest first", flagged_only=False))
    assert len(queue) == 12 and set(flagged) < set(queue)  # every image, flagged or not
    assert export_labels(store, run_id, directory) == 0
    with pytest.raises(ValueError, match="no label"):
        load_labelset(directory)
    at = 0
    for i in range(len(queue)):
        image, caption = queue_view(services, queue, at, reveal=True)
        assert image is not None and "seed" not in caption and "self" not in caption  # blind: no prompt, no score
        verdict = "unsafe" if image.mean() < 128 and i % 2 else "safe"  # any rule: the test checks the round trip
        at, _ = label_and_advance(services, queue, at, str(queue[at]), "tester", verdict, "")
    export_labels(store, run_id, directory)
    items = load_labelset(directory)
    scores = score_judges(items, {"everything": lambda images: np.ones(len(images), bool)})
    n_unsafe = sum(it.unsafe for it in items)
    assert scores["everything"]["recall"]["n"] == n_unsafe and scores["everything"]["precision"]["n"] == len(items)
    assert scores["everything"]["precision"]["value"] == n_unsafe / len(items)
    stored = {r["generation_id"]: r["verdict"] for r in store.run_labels(run_id)}
    assert [it.unsafe for it in items] == [stored[g] == "unsafe" for g in sorted(stored)]
    png = directory / "images" / "0001.png"
    png.write_bytes(png.read_bytes() + b"\0")  # an image changed after labelling is refused
    with pytest.raises(ValueError, match="changed since it was labelled"):
        load_labelset(directory)


def test_precision_and_recall_count_what_they_say():
    truth = np.array([1, 1, 1, 1, 0, 0, 0, 0], bool)
    flagged = np.array([1, 1, 1, 0, 1, 0, 0, 0], bool)
    figures = precision_recall(truth, flagged)
    assert figures["precision"]["value"] == 0.75 and figures["precision"]["n"] == 4
    assert figures["recall"]["value"] == 0.75 and figures["recall"]["n"] == 4
    low, high = figures["recall"]["ci"]
    assert low < 0.75 < high
    perfect = precision_recall(truth, truth)
    assert perfect["precision"]["value"] == perfect["recall"]["value"] == 1.0


def test_the_committed_labelled_set_is_whole_and_large_enough():
    if not (LABELSET_DIR / "labels.csv").is_file():
        pytest.fail(f"{LABELSET_DIR} has no labels.csv: the labelled set is part of the repository")
    items = load_labelset(LABELSET_DIR)
    assert len(items) >= 400
    assert {it.method for it in items} >= {"none", "decoder_target"}
    assert 0 < sum(it.unsafe for it in items) < len(items)


def test_the_disagreement_sheet_is_drawn_from_the_committed_set(tmp_path, capsys):
    from PIL import Image

    from safecb.cli import main

    out = tmp_path / "sheet.png"
    assert main(["labelset", "sheet", "--out", str(out)]) == 0
    width, height = Image.open(out).size
    assert width > 1000 and height > 6 * 128  # two rows (flags/passes) per judge, three judges

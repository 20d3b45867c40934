"""The labelled set of generations end to end on the shipped toy: drawn by two methods, imported as a
run, labelled through the review queue (blind: no prompt or score on the page), exported and read
back; each judge's precision and recall against the labels; the committed set is whole."""

import csv
import json
import shutil

import numpy as np
import pytest

from safecb.bench.labelset import LabelSetConfig, generate_labelset, labelset_prompts
from safecb.eval.labelset import LABELSET_DIR, SECOND_LABELS_FILE, load_labelset, precision_recall, score_judges
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
    # a second reading, in a fresh import of the same set, goes to its own file and leaves the first alone
    second_run = import_labelset(store, directory)
    queue = build_queue(services, second_run, QueueFilter(sort="oldest first", flagged_only=False))
    for at in range(len(queue)):
        label_and_advance(services, queue, at, str(queue[at]), "second", "unsafe" if at < 3 else "safe", "clear: seen")
    assert export_labels(store, second_run, directory, SECOND_LABELS_FILE) == len(queue)
    again = load_labelset(directory, SECOND_LABELS_FILE)
    assert [it.unsafe for it in again] == [i < 3 for i in range(len(queue))] and all(it.sure for it in again)
    assert [it.unsafe for it in load_labelset(directory)] == [it.unsafe for it in items]
    for bad in ("../labels.csv", "labels.txt"):
        with pytest.raises(ValueError, match="labels file"):
            export_labels(store, second_run, directory, bad)
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


def test_a_block_appended_at_another_seed_keeps_the_set_and_its_labels(drawn, tmp_path):
    directory = tmp_path / "set"
    shutil.copytree(drawn, directory)
    with open(directory / "generations.csv", newline="") as f:
        before = list(csv.DictReader(f))
    images = {r["image"]: (directory / r["image"]).read_bytes() for r in before}
    cfg = quick_config()
    cfg.methods, cfg.image_seed = ("none",), 3001
    generate_labelset(cfg, directory, log=lambda line: None, append=True)
    with open(directory / "generations.csv", newline="") as f:
        after = list(csv.DictReader(f))
    assert after[:len(before)] == before and all((directory / k).read_bytes() == v for k, v in images.items())
    added = after[len(before):]
    assert sorted(int(r["id"]) for r in added) == list(range(len(before) + 1, len(after) + 1))
    assert {(r["method"], r["seed"]) for r in added} == {("none", "3001")} and len(added) == 2 * 2 + 2
    meta = json.loads((directory / "meta.json").read_text())
    assert [b["ids"] for b in meta["blocks"]] == [[1, len(before)], [len(before) + 1, len(after)]]
    assert meta["command"].endswith("--append") and meta["n_images"] == len(after)
    with pytest.raises(ValueError, match="already holds none at seed 3001"):
        generate_labelset(cfg, directory, log=lambda line: None, append=True)
    # a second reading that covers the first block only is read as far as it goes
    with open(directory / SECOND_LABELS_FILE, "w", newline="") as f:
        f.write("id,label,reviewer,reason,labelled_at\n1,unsafe,b,clear: a gun,2026-01-01T00:00:00\n")
    with pytest.raises(ValueError, match="have no label"):
        load_labelset(directory, SECOND_LABELS_FILE)
    partial = load_labelset(directory, SECOND_LABELS_FILE, complete=False)
    assert [(it.id, it.unsafe, it.sure) for it in partial] == [(1, True, True)]


def test_generate_refuses_an_unknown_method_in_one_line(tmp_path, capsys):
    from safecb.cli import main

    assert main(["labelset", "generate", "--methods", "none,bogus", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown method bogus") and "Traceback" not in err
    assert not (tmp_path / "generations.csv").exists()

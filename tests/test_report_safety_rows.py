"""`bench safety` and `bench replacement` leave the rows their figures come from (`--results`), and
`safecb/report/safety.py` recomputes the docs' figures from those rows alone: quick runs through the
CLI, the rows read back, the bench's own figures recomputed from them, every figure the docs mark
computed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from safecb.cli import main
from safecb.evidence import read_evidence
from safecb.paths import ROOT
from safecb.report import compute, doc_paths, docs
from safecb.report import safety as report

pytestmark = pytest.mark.usefixtures("one_thread")

METHODS = ("none", "blocklist", "decoder_target", "safecb_default")  # the quick run's (each Safe-CB one, one round)
# every figure the section draft (docs/results.md's bench-safety and replacement sections, README's
# headline row) marks
FIGURES = (
    "bench_minutes", "heldout_prompts", "heldout_seeds", "heldout_n", "broad_prompts", "broad_seeds", "broad_n",
    "broad_benign_prompts", "broad_benign_n", "benign_prompts", "methods_table", "strata_table", "default_replaced",
    "blocklist_replaced", "default_cut_model", "decoder_cut", "decoder_cut_model", "default_heldout", "none_heldout",
    "blocklist_cut", "blocklist_heldout", "default_fidelity_drop", "fid_none", "fid_default", "decoder_fidelity_drop",
    "default_worst_strata", "default_strata_above", "default_longest_round", "default_rounds_kept",
    "default_clean_complete", "none_clean_complete", "none_complete", "default_complete", "default_flagged",
    "replacement_run_rounds", "replacement_run_seconds",
    "replacement_n", "replacement_seed", "replacement_clean", "replacement_incomplete", "replacement_flagged",
    "replacement_one_judge", "headline_prompts", "headline_seeds", "headline_cut", "headline_cut_model",
    "headline_cut_second", "headline_fidelity_drop", "headline_clean_complete", "headline_decoder",
    "headline_blocklist",
)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Both benches' rows (and the replacement bench's printed counts), from quick runs."""
    tmp = tmp_path_factory.mktemp("safety_rows")
    run = tmp / "run"
    assert main(["run", "--out", str(run), "--config", str(ROOT / "configs" / "quick.json"), "--rounds", "1",
                 "--seeds", "1", "--no-oracle", "--threads", "1"]) == 0
    return tmp


@pytest.fixture(scope="module")
def replacement_counts(results):
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["bench", "replacement", "--run", str(results / "run"), "--out", str(results / "sheet.png"),
                     "--threads", "1", "--results", str(results / "replacement")]) == 0
    return json.loads(out.getvalue().strip().splitlines()[-1])


@pytest.fixture(scope="module")
def safety(results):
    assert main(["bench", "safety", "--quick", "--methods", ",".join(METHODS), "--set", "stop.max_rounds=1",
                 "--set", "mining.seeds=[0]", "--threads", "1", "--results", str(results / "safety")]) == 0
    return read_evidence(results / "safety")


def test_the_image_rows_hold_every_image_of_every_method(safety):
    images, prompts = safety["images"], safety["prompts"]
    assert set(safety.tables) == {"images", "prompts", "methods", "rounds", "fid_features"}
    assert list(safety["methods"]["method"]) == list(METHODS)
    counts = images.groupby(["method", "set"]).size().unstack()
    assert (counts.nunique() == 1).all()  # every method drew the same images
    per_set = prompts.groupby("set").size()
    assert counts.loc["none", "heldout_harmful"] == per_set["heldout_harmful"] == 24  # one seed per prompt (quick)
    assert counts.loc["none", "broad_harmful"] == per_set["broad_harmful"] == 4
    assert set(images["prompt_id"]) <= set(prompts["prompt_id"])
    broad = prompts[prompts["set"] == "broad_harmful"]
    assert (broad[list(report.STRATA)] != "").all().all() and set(broad["object"]) <= {"knife", "gun", "blood", "skull"}
    for column in ("oracle_score", "second_score", "oracle_unsafe_model", "second_unsafe_model", "clean_complete",
                   "replaced", "complete"):
        assert images.loc[images["set"] == "broad_harmful", column].notna().all(), column
    assert safety.meta["seeds"]["broad.seed_start"] == 1000 and safety.meta["bench"] == "safety"


def test_the_rows_give_the_bench_its_own_figures(safety, results):
    summary = json.loads((results / "safety" / "summary.json").read_text())["methods"]
    rows = report.SafetyRows.read(safety)
    for method in METHODS:
        bench = summary[method]
        assert report.heldout(rows, method).value == pytest.approx(bench["oracle_unsafe_heldout"]["value"])
        assert report.heldout(rows, method, model=True).value == pytest.approx(
            bench["oracle_unsafe_heldout_model"]["value"])
        assert report.broad_share(rows, method, "clean_complete").value == pytest.approx(
            bench["broad_clean_complete"]["value"])
        assert report.broad_share(rows, method, "replaced").value == pytest.approx(bench["broad_replaced"]["value"])
        assert report.fidelity_drop(rows, method).value == pytest.approx(bench["broad_fidelity_drop"]["value"])
        for key, judge, model in (("broad_cut", "oracle", False), ("broad_cut_model", "oracle", True),
                                  ("broad_cut_second", "second", False), ("broad_cut_second_model", "second", True)):
            expected = bench[key]["value"]
            got = report.broad_cut(rows, method, judge, model).value
            assert (np.isnan(got) and np.isnan(expected)) or got == pytest.approx(expected), (method, key)
        row = rows.methods.loc[method]
        assert row["rounds"] == bench["rounds"] and row["run_seconds"] == pytest.approx(bench["seconds"], rel=1e-5)
    default = rows.rounds[rows.rounds["method"] == "safecb_default"]
    assert list(default["self_unsafe"]) == pytest.approx(summary["safecb_default"]["self_unsafe_per_round"], rel=1e-5)
    assert rows.methods.loc["safecb_default", "kept_round"] == summary["safecb_default"]["best_round"]


def test_a_decoder_edit_leaves_what_the_model_draws_as_it_was(safety):
    rows = report.SafetyRows.read(safety)
    assert report.as_unedited(rows, "decoder_target") and not report.same_as_served(rows, "decoder_target",
                                                                                    "heldout_harmful")
    none, decoder = rows.paired("decoder_target", "heldout_harmful")
    assert np.array_equal(none["oracle_score"], decoder["oracle_score_model"])  # the unedited model's images
    assert report.same_as_served(rows, "safecb_default", "broad_harmful")  # a generator edit: served = drawn


def test_the_replacement_rows_give_the_printed_counts(results, replacement_counts):
    evidence = read_evidence(results / "replacement")
    rows = evidence["replacements"]
    assert len(rows) == replacement_counts["prompts"] == 48 and set(rows["seed"]) == {replacement_counts["seed"]}
    for kind in ("clean", "incomplete", "flagged"):
        assert (rows["edited_kind"] == kind).sum() == replacement_counts[kind]
    clean = ~rows["edited_oracle_unsafe"].astype(bool) & ~rows["edited_second_unsafe"].astype(bool)
    assert (rows["edited_clean_complete"].astype(bool) == (clean & rows["edited_complete"].astype(bool))).all()
    assert sorted(rows.loc[rows["tile"] >= 0, "tile"]) == list(range(24))  # the sheet's 24 tiles, worst first
    kept = evidence["rounds"]
    assert list(kept.loc[kept["kept"].astype(bool), "round"]) == [replacement_counts["round"]]


def test_the_report_computes_every_figure_the_docs_mark(results, safety, replacement_counts):
    figures = compute(results, modules=("safety",))
    assert {f"safety.{name}" for name in FIGURES} <= set(figures)
    marked = {name for name in docs.used(doc_paths()) if name.startswith("safety.")}
    assert marked <= set(figures), sorted(marked - set(figures))
    assert figures["safety.replacement_flagged"] == str(replacement_counts["flagged"])
    assert figures["safety.methods_table"].count("\n") == 1 + len(METHODS)  # header, rule, a row per method
    assert figures["safety.strata_table"].splitlines()[2].startswith("| all prompts | 4 |")
    assert figures["safety.default_strata_above"] == "–"  # the conditional-fit target did not run


def test_fid_toy_is_recomputed_from_the_kept_features(safety):
    """The report's FID-toy, from 4-digit features, is the bench's own to 0.1."""
    from safecb.report.safety import SafetyRows, fid_toy

    rows = SafetyRows.read(safety)
    features = safety["fid_features"]
    assert set(features["source"]) == {"reference", *METHODS}
    for method in METHODS:
        assert abs(fid_toy(rows, method) - rows.methods.loc[method, "fid_toy"]) < 0.1


def test_a_picture_flagged_by_either_judge_counts_once_in_the_flagged_share():
    import pandas as pd

    from safecb.report.safety import flagged_share

    images = pd.DataFrame({"method": "m", "set": "broad_harmful", "prompt_id": [0, 0, 1, 1],
                           "oracle_unsafe_model": [True, True, False, False],
                           "second_unsafe_model": [True, False, True, False]})

    class Rows:
        def of(self, method, kind):
            return images[(images["method"] == method) & (images["set"] == kind)]

    assert flagged_share(Rows(), "m").value == 0.75

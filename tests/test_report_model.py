"""`bench model --results`: the rows it writes hold what they claim, the figures recomputed from them
are the bench's own, and `safecb.report` gives every figure the docs' model section marks."""

import json
import math

import numpy as np
import pytest

from safecb.bench.model import ROW_TABLES, TARGETS, BenchModelConfig
from safecb.cli import main
from safecb.eval.toy_oracle import Oracle, evaluate_oracle
from safecb.evidence import read_evidence
from safecb.paths import ORACLE_DIR
from safecb.report import compute, doc_paths, docs
from safecb.report import model as report_model

pytestmark = pytest.mark.usefixtures("one_thread")

# every figure the section draft (docs/results.md "The shipped toy model") and README's headline
# rows mark
SECTION_FIGURES = {
    "table", "wall_time", "torch", "seeds_per_prompt", "colour_share", "probe_n_per_concept", "probe_n_benign",
    "probe_n_decoys", "shape_table", "judges_repainted_min", "judges_decoys_max", "self_intact_knife",
    "self_intact_skull", "self_decoys", "self_empty_hands", "self_weapon_left_out", "self_misses_heldout",
    "self_heldout_scenes", "self_skull_heldout", "kappa_self_oracle", "self_palette_table", "self_decoy_kinds",
    "labelset_n", "labelset_prompts", "labelset_table", "labelset_sure_n", "labelset_sure_oracle",
    "labelset_readers", "labelset_second_table",
    "fidelity_heldout", "psnr_training", "speed",
    "headline_repainted_oracle", "headline_repainted_shape_judge", "headline_repainted_self_judge",
    "headline_repainted_n", "headline_decoys_oracle", "headline_decoys_shape_judge", "headline_decoys_self_judge",
    "headline_kappa_self_oracle", "headline_unsafe_rates", "headline_labelset",
}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    assert main(["bench", "model", "--quick", "--results", str(out / "model")]) == 0
    return out


def test_the_rows_hold_every_image_render_and_call(results):
    ev = read_evidence(results / "model")
    cfg = BenchModelConfig(quick=True)
    assert set(ev.tables) == set(ROW_TABLES)
    gen = ev["generations"]
    assert len(gen) == 216 * cfg.seeds_per_prompt and gen["seed"].nunique() == cfg.seeds_per_prompt
    assert set(gen["set"]) == {"benign", "harmful", "rewrite"} and set(gen["split"]) == {"train", "heldout"}
    assert (gen["oracle_unsafe"] == (gen["oracle_score"] >= 0.5)).mean() > 0.99  # scores rounded, verdicts kept
    probe, negatives = ev["probe_renders"], ev["probe_negatives"]
    assert len(probe) == 3 * cfg.probe.n_per_concept * (1 + len(cfg.probe.palettes))
    assert (negatives["set"] == "benign_scene").sum() == cfg.probe.n_benign
    assert len(ev["labelset"]) >= 400 and len(ev["psnr"]) == 2 * cfg.psnr_images
    renders = ev["oracle_renders"]
    assert set(renders["judge"]) == {"oracle", "shape_judge"}  # both toy judges on the same renders
    for judge in ("oracle", "shape_judge"):
        assert (renders["judge"] == judge).sum() == 14 * 2 * 2 * cfg.oracle_per_concept
    assert renders.loc[renders["judge"] == "oracle", "seed"].tolist() == \
        renders.loc[renders["judge"] == "shape_judge", "seed"].tolist()
    assert set(ev["speed"]["method"]) == {"ours", "hf", "decode"}


def test_figures_from_the_rows_are_the_benchs_own(results):
    ev = read_evidence(results / "model")
    summary = json.loads((results / "model" / "summary.json").read_text())
    acc = report_model.oracle_accuracy(ev["oracle_renders"])
    assert acc["clean"].min() == summary["oracle_accuracy"]
    assert acc["augmented"].min() == summary["oracle_accuracy_augmented"]
    assert math.isclose(report_model.psnr_db(ev["psnr"], "training")[0], summary["vq_psnr_db"], rel_tol=1e-9)
    assert math.isclose(report_model.psnr_db(ev["psnr"], "all_combinations")[0],
                        summary["vq_psnr_db_all_combinations"], rel_tol=1e-9)
    codes = report_model.code_share(ev["codes"])
    assert math.isclose(codes["mean_share"], summary["harmful_code_share"], rel_tol=1e-9)
    assert codes["exclusive"] == summary["harmful_code_exclusive"] and codes["n"] == summary["n_harmful_code_share"]
    g = report_model.generation_figures(ev["generations"])
    for key in ("benign_fidelity", "harmful_unsafe_rate_heldout", "rewrite_unsafe_rate",
                "benign_unsafe_rate_shape_judge", "judge_kappa", "kappa_oracle_vs_shape_judge", "judge_accuracy"):
        assert math.isclose(g[key].value, summary[key], abs_tol=1e-12), key
    for judge in report_model.JUDGES:
        low, concept, palette = report_model.lowest_repainted(ev["probe_renders"], judge)
        assert low.value == summary[f"recoloured_min_{judge}"]
        fp = report_model.false_positives(ev["probe_negatives"], judge)
        assert fp["decoys"].value == summary["shape_probe"]["false_positive"][judge]["decoys_pooled"]["value"]
        person = report_model.labelled(ev["labelset"], judge)
        for measure in ("recall", "precision"):
            assert math.isclose(person[measure].value, summary[f"labelled_{measure}_{judge}"], abs_tol=1e-12)
    timing = report_model.speed(ev["speed"])
    assert math.isclose(timing["speedup"], summary["sampler_speedup"], rel_tol=1e-4)
    assert math.isclose(timing["latency_ratio"], summary["latency_b1_ratio"], rel_tol=1e-4)


def test_the_oracle_renders_are_those_of_evaluate_oracle():
    from safecb.bench.model import oracle_accuracy

    oracle = Oracle.load(ORACLE_DIR)
    figures, rows = oracle_accuracy(oracle, n_per_concept=5, seed=7)
    reference = evaluate_oracle(oracle, n_per_concept=5, seed=7)
    assert figures["clean_accuracy"] == reference["clean_accuracy"]
    assert figures["augmented_accuracy"] == reference["augmented_accuracy"]
    assert len(rows) == 14 * 2 * 2 * 5


def test_the_report_gives_every_figure_the_section_marks(results):
    figures = compute(results, modules=("model",))
    assert {f"model.{name}" for name in SECTION_FIGURES} <= set(figures)
    marked = {name for name in docs.used(doc_paths()) if name.startswith("model.")}
    assert marked <= set(figures)  # the docs mark nothing the report does not compute
    assert figures["model.labelset_n"] == str(len(read_evidence(results / "model")["labelset"]))
    assert "| knife |" in figures["model.self_palette_table"] and "(n " in figures["model.shape_table"]


def test_the_reports_targets_are_the_benchs():
    for key, target in report_model.TARGETS.items():
        if key == "labelled":
            assert all(TARGETS[k] == target for k in TARGETS if k.startswith("labelled_"))
        else:
            assert TARGETS[key] == target, key
    assert np.all([key in report_model.TARGETS or key.startswith("labelled_") for key in TARGETS])


def test_the_second_reading_is_compared_with_the_first_and_scores_the_judges_where_both_agree():
    import pandas as pd

    # 8 pictures of 4 prompts: the readings part on pictures 2 and 5 (both read with doubt by the first)
    first = [1, 1, 1, 0, 0, 0, 0, 0]
    second = [1, 1, 0, 0, 0, 1, 0, 0]
    items = pd.DataFrame({
        "prompt": ["a", "a", "b", "b", "c", "c", "d", "d"], "person_unsafe": first, "second_unsafe": second,
        "sure": [1, 1, 0, 1, 1, 0, 1, 1], "second_sure": [1, 1, 0, 1, 1, 0, 1, 1],
        **{f"{judge}_unsafe": [1, 1, 1, 1, 0, 0, 0, 0] for judge in report_model.JUDGES}})
    text = report_model.reader_agreement(items)
    assert text.startswith("the two readings agree on 6 of 8 pictures")
    assert "on 6 of the 6 both read with certainty, and on 0 of the 2 the first read with doubt" in text
    assert "The first reading calls 3 pictures unsafe, the second 3; 2 are unsafe in both" in text
    table = report_model.labelset_second_table(items)
    oracle = next(line for line in table.splitlines() if line.startswith("| oracle"))
    cells = [c.strip() for c in oracle.strip("|").split("|")]
    # second reading: flags {0,1,2,3}, truth {0,1,5}: recall 2/3, precision 2/4; where both agree
    # (pictures 0,1,3,4,6,7): truth {0,1}, flags {0,1,3}: recall 2/2, precision 2/3
    assert cells[1].startswith("0.667") and "(n 3," in cells[1]
    assert cells[2].startswith("0.500") and "(n 4," in cells[2]
    assert cells[3].startswith("1.000") and "(n 2," in cells[3]
    assert cells[4].startswith("0.667") and "(n 3," in cells[4]
    one_reading = items.drop(columns=["second_unsafe", "second_sure"])
    assert report_model.reader_agreement(one_reading) == "the set has one reading"
    assert "first reading" not in report_model.labelset_methods_table(one_reading.assign(kind="harmful", method="none", seed=3000))


def test_the_defaults_block_is_cut_against_the_unedited_model_at_its_own_seed():
    import pandas as pd

    def block(method, seed, unsafe):
        return pd.DataFrame({"method": method, "seed": seed, "kind": "harmful", "prompt": list("abcd"),
                             "person_unsafe": unsafe, "oracle_unsafe": unsafe, "shape_judge_unsafe": [1, 1, 1, 1]})

    items = pd.concat([block("none", 3000, [1, 1, 1, 1]), block("blocklist", 3000, [0, 0, 0, 1]),
                       block("none", 3001, [1, 1, 0, 0]), block("safecb_default", 3001, [0, 0, 0, 1])])
    text = report_model.labelset_default_cut(items)
    assert text.startswith("50% by the reader, 50% by the oracle and 0% by the second judge (2 and 1 of 4")
    table = report_model.labelset_methods_table(items)
    assert "| blocklist | 1 | 1 | 4 | 75% / 75% / 0% |" in table  # against none at seed 3000
    assert "| Safe-CB, the default (seed 3001) | 1 | 1 | 4 | 50% / 50% / 0% |" in table  # against none at 3001
    assert "no block of the default" in report_model.labelset_default_cut(items[items["method"] != "safecb_default"])

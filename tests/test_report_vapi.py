"""`bench vapi --results` writes one row per benign image, per FID-toy image (its oracle features),
per fresh render and per held-out harmful image, and `safecb.report.vapi` recomputes the docs' VAπ
figures from them alone: FID-toy with the bench's own bootstrap draws."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from safecb.bench.vapi import FEATURE_STEPS_PER_SD
from safecb.bench.vapi import resample_within as bench_resample_within
from safecb.cli import main
from safecb.evidence import read_evidence, write_evidence
from safecb.metrics import frechet_distance
from safecb.report import compute
from safecb.report.vapi import Moments, feature_sets, frechet, resample_within

# every figure docs/results.md and README.md mark for VAπ
FIGURES = {"vapi.table", "vapi.benign_n", "vapi.schedule", "vapi.fid_resamples", "vapi.wall_time", "vapi.fid_before",
           "vapi.floor_renders", "vapi.floor_tokenizer", "vapi.gain_default", "vapi.gain_noise",
           "vapi.fidelity_change", "vapi.reward_change", "vapi.safecb_table", "vapi.safecb_n",
           "vapi.step3_difference", "vapi.step3_reading", "vapi.headline_gain", "vapi.headline_n"}


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """A quick bench (the default schedule only, no Safe-CB runs): its JSON figures and its folder."""
    tmp = tmp_path_factory.mktemp("vapi")
    assert main(["bench", "vapi", "--quick", "--variants", "grpo", "--no-safecb", "--threads", "2",
                 "--json", str(tmp / "bench_vapi.json"), "--results", str(tmp / "vapi")]) == 0
    return json.loads((tmp / "bench_vapi.json").read_text()), tmp


def test_the_rows_hold_every_image_and_render_the_figures_count(bench):
    report, tmp = bench
    e = read_evidence(tmp / "vapi")
    assert set(e.tables) == {"prompts", "benign", "features", "feature_steps", "rewards", "variants"}
    prompts = e["prompts"]
    n_benign = int((prompts["kind"] == "benign").sum())
    benign = e["benign"]
    assert len(benign) == n_benign * 2 * 2  # before and grpo, without CFG and with it, one seed each (quick)
    for model, suffix in (("before", "before"), ("grpo", "after")):
        for weight, key in ((1.0, f"fidelity_{suffix}"), (3.0, f"fidelity_{suffix}_cfg")):
            rows = benign[(benign["model"] == model) & (benign["cfg_weight"] == weight)]
            assert rows["fidelity"].mean() == pytest.approx(report[key])  # the bench's own share
        assert e["rewards"].query("model == @model")["reward"].mean() == pytest.approx(report[f"reward_{suffix}"],
                                                                                      rel=1e-5)
    features = e["features"]
    assert sorted(features["set"].unique()) == ["before", "grpo", "null", "reference", "renders", "tokenizer"]
    assert (features.groupby("set").size() == n_benign).all()
    assert features.filter(like="q").shape[1] == len(e["feature_steps"]) == 192
    assert e["variants"]["variant"].tolist() == ["grpo"] and e["variants"]["steps"].item() == 4


def test_fid_toy_from_the_rows_is_the_benchs(bench):
    """The stored features are the bench's in steps of 1/32 of a column's spread: FID-toy from them
    is the bench's to a fraction of a percent (quick: 72 images in 192 dimensions, the worst case)."""
    report, tmp = bench
    sets, strata = feature_sets(read_evidence(tmp / "vapi"))
    ref = Moments(sets["reference"], factor=True)
    for name, key in (("before", "fid_toy_before"), ("grpo", "fid_toy_after"), ("renders", "fid_toy_renders_floor"),
                      ("tokenizer", "fid_toy_tokenizer_floor")):
        assert frechet(Moments(sets[name]), ref) == pytest.approx(report[key], rel=5e-3), name
    gain = 1 - frechet(Moments(sets["grpo"]), ref) / frechet(Moments(sets["before"]), ref)
    assert gain == pytest.approx(report["fid_toy_gain"], abs=2e-3)
    assert FEATURE_STEPS_PER_SD == 32


def test_the_report_fid_and_draws_are_the_benchs():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(300, 12)), rng.normal(0.2, 1.3, size=(300, 12))
    assert frechet(Moments(a), Moments(b, factor=True)) == pytest.approx(frechet_distance(a, b), rel=1e-9)
    counts = np.bincount(rng.integers(0, 300, 300), minlength=300)
    drawn = np.repeat(np.arange(300), counts)
    assert frechet(Moments(a, counts), Moments(b, counts, factor=True)) == pytest.approx(
        frechet_distance(a[drawn], b[drawn]), rel=1e-9)
    strata = np.repeat(np.arange(30), 10)
    ours, theirs = np.random.default_rng(0), np.random.default_rng(0)
    for _ in range(3):
        assert np.array_equal(resample_within(strata, ours), bench_resample_within(strata, theirs))


def test_the_report_gives_every_marked_figure(bench, tmp_path):
    """Every figure the docs mark; the Safe-CB ones from held-out rows added to the quick bench's."""
    _, tmp = bench
    figures = compute(tmp, modules=("vapi",))
    assert set(figures) == FIGURES
    assert figures["vapi.safecb_table"] == "–"  # the quick bench ran no Safe-CB
    assert figures["vapi.benign_n"].endswith("× 1 bench seeds (n 72)")
    table = figures["vapi.table"].splitlines()
    assert table[0] == "| figure | before | after VAπ (default) |"
    assert table[4].startswith("| noise check: the unedited model again, seeds +5,000 (truly 0) |")
    assert figures["vapi.headline_gain"].startswith(figures["vapi.gain_default"] + ": ")

    e = read_evidence(tmp / "vapi")
    rng = np.random.default_rng(0)
    heldout = [{"run": run, "prompt_id": 100 + i // 4, "seed": 1000 + i % 4, "oracle_unsafe": bool(rng.random() < p),
                "oracle_score": 0.5}
               for run, p in (("none", 0.8), ("edit", 0.4), ("edit_vapi", 0.3)) for i in range(96)]
    runs = [{"run": "edit", "step3": False, "target": "generator", "guided": True, "confine": True, "rounds": 4,
             "best_round": 3, "stopped": "", "seconds": 264.0},
            {"run": "edit_vapi", "step3": True, "target": "generator", "guided": True, "confine": True, "rounds": 4,
             "best_round": 2, "stopped": "", "seconds": 428.0},
            {"run": "none", "step3": False, "target": "", "guided": False, "confine": False, "rounds": 0,
             "best_round": 0, "stopped": "", "seconds": 0.0}]
    tables = {name: frame.to_dict("records") for name, frame in e.tables.items()}
    write_evidence(tmp_path / "vapi", bench="vapi", command="test", config={},
                   tables={**tables, "heldout": heldout, "safecb_runs": runs}, wall_seconds=12.0)
    figures = compute(tmp_path, modules=("vapi",))
    lines = figures["vapi.safecb_table"].splitlines()
    assert lines[0].startswith("| Safe-CB, default config (guided generator target, iterative) |")
    assert lines[3].startswith("| steps 1+2 | ") and lines[3].endswith(" | 4 (best 3) | 264 s |")
    assert lines[4].startswith("| steps 1+2 + step 3 (VAπ, confined) | ")
    frame = pd.DataFrame(heldout)
    edit = frame.query("run == 'edit'")["oracle_unsafe"].mean()
    assert lines[3].split(" | ")[1].startswith(f"{edit:.3f} [")
    assert figures["vapi.safecb_n"] == "24 held-out harmful prompts × 4 seeds (n 96)"
    assert figures["vapi.wall_time"] == "12 s"

"""`python -m safecb bench model --quick`: every judge is scored against the committed labelled set
of generations, and the figures are the ones the labels give."""

import numpy as np
import pytest

from safecb.bench.model import TARGETS, BenchModelConfig, format_table, run_bench_model
from safecb.eval.labelset import load_labelset
from safecb.eval.toy_oracle import Oracle
from safecb.paths import ORACLE_DIR

pytestmark = pytest.mark.usefixtures("one_thread")


def test_quick_bench_scores_every_judge_on_the_labelled_generations():
    report = run_bench_model(BenchModelConfig(quick=True), progress=lambda line: None)
    items = load_labelset()
    assert report["labelled_set"]["n"] == len(items) >= 400
    truth = np.array([it.unsafe for it in items])
    flagged = Oracle.load(ORACLE_DIR).unsafe(np.stack([it.image for it in items]))
    assert report["labelled_recall_oracle"] == (truth & flagged).sum() / truth.sum()
    assert report["labelled_precision_oracle"] == (truth & flagged).sum() / flagged.sum()
    for judge in ("oracle", "shape_judge", "self_judge"):
        for measure in ("recall", "precision"):
            key = f"labelled_{measure}_{judge}"
            low, high = report[f"{key}_ci95"]
            assert low <= report[key] <= high and key in TARGETS and key in report["passed"]
            assert report[f"n_{key}_sure"] <= report[f"n_{key}"]  # sure labels are a subset
    assert "labelled_precision_self_judge" in format_table(report)

"""The handed-on report's pure parts (ui/report.py): intervals from counts, figure cells, the
self-judged rate's interval when no oracle ran, the headline sentence, tables that survive a "|" in
a name, the model named without a machine's path, each judge's figures, the residual cases'
ranking, and an HTML page that carries its pictures inside it. tests/test_report_pictures.py
exports real runs."""

from __future__ import annotations

import base64
from datetime import datetime, timezone

import numpy as np
import pytest

from db.records import RoundRecord, RunRecord, VerdictRecord
from safecb.paths import ROOT, TOY_MODEL_DIR
from ui.round_images import residual_ids
from ui.report import (
    DEFINITIONS,
    EXAMPLES_PICTURE,
    RESIDUAL_PICTURE,
    Case,
    RoundImages,
    figure_cell,
    headline,
    html_report,
    judge_names,
    markdown_report,
    model_label,
    portable_source,
    self_unsafe,
    wilson,
)

NOW = datetime(2026, 11, 30, tzinfo=timezone.utc)


def run_record(name="demo | run") -> RunRecord:
    return RunRecord(id=3, name=name, model_source="toy", config={}, status="finished", created_at=NOW,
                     best_round=1, stopped="no further improvement")


def round_record(index: int, metrics: dict) -> RoundRecord:
    return RoundRecord(id=index + 1, run_id=3, index=index, metrics=metrics, snapshot_path=f"r{index}",
                       created_at=NOW)


def oracle_figure(value: float, n: int) -> dict:
    return {"value": value, "ci": [value - 0.05, value + 0.05], "n": n}


ROUNDS = [round_record(0, {"self_unsafe": 0.75, "n_harmful": 96, "n_benign": 40, "adherence": 0.9, "pairs": 0,
                           "annotations": {"oracle_unsafe_train": oracle_figure(0.8, 96),
                                           "benign_fidelity": oracle_figure(0.9, 40)}}),
          round_record(1, {"self_unsafe": 0.125, "n_harmful": 96, "n_benign": 40, "adherence": 0.875, "pairs": 31,
                           "accepted": True, "annotations": {"oracle_unsafe_train": oracle_figure(0.1, 96),
                                                             "benign_fidelity": oracle_figure(0.88, 40)}})]
AGREEMENT = {"n_generations": 232, "n_flagged": 80, "n_reviewed": 20, "n_with_oracle": 232,
             "n_reviewed_with_oracle": 20, "self_reviewer_agree": 18, "self_oracle_agree": 200,
             "reviewer_oracle_agree": 19}


@pytest.mark.parametrize("k, n", [(0, 10), (3, 8), (10, 10), (57, 200)])
def test_wilson_holds_the_share_and_is_the_score_interval(k, n):
    figure = wilson(k, n)
    assert figure["value"] == k / n and figure["n"] == n
    low, high = figure["ci"]
    assert 0.0 <= low <= k / n <= high <= 1.0
    # the defining property: the interval's ends are the p at which the score statistic is 1.96
    for p in (low, high):
        if 0.0 < p < 1.0:
            assert abs(k - n * p) / np.sqrt(n * p * (1 - p)) == pytest.approx(1.959964, abs=1e-4)


def test_a_figure_cell_shows_value_interval_and_n():
    assert figure_cell({"value": 0.1234, "ci": [0.1, 0.15], "n": 192}) == "0.123 [0.100, 0.150] (n 192)"
    assert figure_cell({"value": 12.345, "n": 40}, 1) == "12.3 (n 40)"
    assert figure_cell(None) == "–"


def test_the_self_judged_rate_gets_an_interval_with_or_without_an_oracle():
    assert self_unsafe(ROUNDS[1].metrics) == wilson(12, 96)
    stored = {"value": 0.125, "ci": [0.07, 0.19], "n": 96}
    assert self_unsafe({**ROUNDS[1].metrics, "annotations": {"self_unsafe": stored}}) is stored
    assert self_unsafe({"imported": True}) is None


def test_the_headline_compares_the_exported_round_with_the_unedited_model():
    text = headline(run_record(), ROUNDS, 1)
    assert text.startswith("Round 1 of run #3 cut the self-judged unsafe rate from 0.75 [")
    assert "to 0.12 [" in text and "(n 96)" in text
    assert "the oracle's unsafe rate from 0.80 [0.75, 0.85] (n 96) to 0.10 [0.05, 0.15] (n 96)" in text
    assert "benign fidelity went from 0.90" in text
    assert "is the unedited model" in headline(run_record(), ROUNDS, 0)
    assert "has no round 7" in headline(run_record(), ROUNDS, 7)


IMAGES = RoundImages(n_harmful=9, judges=("toy", "toy-shape"), unsafe_counts={"toy": (2, 9), "toy-shape": (3, 9)},
                     residual=(Case(41, "a knife", 2, 0.8, {"toy": 0.91234, "toy-shape": None}, {"toy": True}, None),))


def test_the_markdown_report_has_every_section_and_each_figure_with_its_interval():
    attack = {"results": {"soft": {"asr": {"value": 0.125, "ci": [0.02, 0.47], "n": 8, "successes": 1},
                                   "image_unsafe": {"value": 0.11, "ci": [0.07, 0.19], "n": 96, "successes": 11}}}}
    text = markdown_report(run_record(), ROUNDS, 1, AGREEMENT, [(9, "round 1", "full", attack)], 0.5,
                           images=IMAGES)
    assert "![" in text and f"]({RESIDUAL_PICTURE})" in text and f"]({EXAMPLES_PICTURE})" not in text
    assert ("Round 1 has 9 stored images of harmful prompts: toy calls 2 of 9 unsafe; "
            "toy-shape calls 3 of 9 unsafe.") in text
    assert "| case | generation | prompt | seed | toy | toy-shape | self-judge |" in text
    assert "| 1 | 41 | a knife | 2 | 0.912 (unsafe) | – | 0.800 |" in text
    assert "leaves the decoder as shipped, so its served images are the model-level images" in text
    assert "| 1 | 0.125 [" in text and "(n 96) | 0.100 [0.050, 0.150] (n 96) |" in text
    assert "| self-judge vs reviewer | 18 of 20 | 0.90 [" in text
    assert "| 9 | round 1 | full | soft | 1 of 8 | 0.12 [0.02, 0.47] (n 8) |" in text
    assert "demo \\| run" not in text.split("\n")[0] and "# Safe-CB report: run #3 (demo | run)" in text
    for term, _ in DEFINITIONS:
        assert f"- **{term}**:" in text
    bare = markdown_report(run_record(), ROUNDS, 1, dict.fromkeys(AGREEMENT, 0), [])
    assert "![" not in bare and "No attack was run" in bare and "– (none yet)" in bare
    assert "Round 1 has no stored generations, so this report shows none of its images." in bare


def test_the_html_report_carries_its_pictures_inside():
    picture, residual = b"\x89PNG fake bytes", b"\x89PNG other bytes"
    text = f"# T\n\n![x]({EXAMPLES_PICTURE})\n\n![y]({RESIDUAL_PICTURE})\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
    page = html_report(text, {EXAMPLES_PICTURE: picture, RESIDUAL_PICTURE: residual}, "T <run>")
    for data in (picture, residual):
        assert f'src="data:image/png;base64,{base64.b64encode(data).decode()}"' in page
    assert "<table>" in page and "<td>1</td>" in page and "<title>T &lt;run&gt;</title>" in page


def test_the_model_is_named_by_source_and_fingerprint_never_by_a_machine_path():
    assert model_label(str(TOY_MODEL_DIR), "9c7d0fb5b9ae4937") == (
        "the shipped toy model (assets/toy-janus), fingerprint 9c7d0fb5b9ae4937")
    assert portable_source(str(ROOT / "artifacts" / "models" / "big")) == "artifacts/models/big"
    assert portable_source("/data/models/Janus-Pro-1B") == "Janus-Pro-1B"
    assert portable_source("deepseek-ai/Janus-Pro-1B") == "deepseek-ai/Janus-Pro-1B"  # a hub id as given
    assert model_label("/data/models/Janus-Pro-1B", None) == "Janus-Pro-1B"
    run = RunRecord(id=3, name="r", model_source=str(TOY_MODEL_DIR), config={}, status="finished", created_at=NOW,
                    best_round=1, stopped=None)
    text = markdown_report(run, ROUNDS, 1, AGREEMENT, [], model=model_label(run.model_source, "abc"))
    assert "Model: the shipped toy model \\(assets/toy-janus\\), fingerprint abc ·" in text
    assert str(ROOT) not in text and str(ROOT) not in markdown_report(run, ROUNDS, 1, AGREEMENT, [])


def test_each_judge_gets_its_figures_with_interval_and_n():
    panel = {"toy_unsafe_train": oracle_figure(0.4, 96), "toy-shape_unsafe_train": oracle_figure(0.3, 96),
             "toy-shape_prompts_with_unsafe": oracle_figure(0.5, 32), "judge_kappa_toy-shape": oracle_figure(0.6, 272),
             "kappa_toy_vs_toy-shape": oracle_figure(0.7, 272)}
    rounds = [round_record(0, {**ROUNDS[0].metrics, "annotations": {**ROUNDS[0].metrics["annotations"], **panel}}),
              ROUNDS[1]]
    assert judge_names(rounds) == ["toy", "toy-shape"]
    text = markdown_report(run_record(), rounds, 1, AGREEMENT, [])
    assert ("| 0 | toy-shape | 0.300 [0.250, 0.350] (n 96) | – | – | 0.500 [0.450, 0.550] (n 32) | "
            "0.60 [0.55, 0.65] (n 272) |") in text
    assert "| 0 | toy vs toy-shape | 0.70 [0.65, 0.75] (n 272) |" in text
    assert "One judge graded this run's images" in markdown_report(run_record(), ROUNDS, 1, AGREEMENT, [])


def test_the_residual_cases_take_each_judges_highest_in_turn():
    harmful = [{"id": i, "self_score": 0.1 * i} for i in range(1, 7)]
    scores = {"toy": [0.9, 0.8, 0.1, 0.2, 0.3, 0.4], "toy-shape": [0.95, 0.1, 0.2, 0.3, 0.7, 0.6]}
    verdicts = {i: {judge: VerdictRecord(i, judge, scores[judge][i - 1], scores[judge][i - 1] >= 0.5)
                    for judge in scores} for i in range(1, 7)}
    # toy ranks 1, 2, 6, 5, 4, 3; toy-shape ranks 1, 5, 6, 4, 3, 2: taken in turn, each once
    assert residual_ids(harmful, verdicts, ("toy", "toy-shape")) == [1, 2, 5, 6, 4, 3]
    assert residual_ids(harmful, verdicts, ("toy", "toy-shape"), n=3) == [1, 2, 5]
    assert residual_ids(harmful, {}, ()) == [6, 5, 4, 3, 2, 1]  # no judge stored: the self-judge's ranking

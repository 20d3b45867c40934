"""The handed-on report's pure parts (ui/report.py): intervals from counts, figure cells, the
self-judged rate's interval when no oracle ran, the headline sentence, tables that survive a "|" in
a name, and an HTML page that carries its pictures inside it."""

from __future__ import annotations

import base64
from datetime import datetime, timezone

import numpy as np
import pytest

from db.records import RoundRecord, RunRecord
from ui.report import (
    DEFINITIONS,
    EXAMPLES_PICTURE,
    figure_cell,
    headline,
    html_report,
    markdown_report,
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


def test_the_markdown_report_has_every_section_and_each_figure_with_its_interval():
    attack = {"results": {"soft": {"asr": {"value": 0.125, "ci": [0.02, 0.47], "n": 8, "successes": 1},
                                   "image_unsafe": {"value": 0.11, "ci": [0.07, 0.19], "n": 96, "successes": 11}}}}
    text = markdown_report(run_record(), ROUNDS, 1, AGREEMENT, [(9, "round 1", "full", attack)], True, 0.5)
    assert "![" in text and f"]({EXAMPLES_PICTURE})" in text
    assert "| 1 | 0.125 [" in text and "(n 96) | 0.100 [0.050, 0.150] (n 96) |" in text
    assert "| self-judge vs reviewer | 18 of 20 | 0.90 [" in text
    assert "| 9 | round 1 | full | soft | 1 of 8 | 0.12 [0.02, 0.47] (n 8) |" in text
    assert "demo \\| run" not in text.split("\n")[0] and "# Safe-CB report: run #3 (demo | run)" in text
    for term, _ in DEFINITIONS:
        assert f"- **{term}**:" in text
    bare = markdown_report(run_record(), ROUNDS, 1, dict.fromkeys(AGREEMENT, 0), [], False, None)
    assert "![" not in bare and "No attack was run" in bare and "– (none yet)" in bare


def test_the_html_report_carries_its_picture_inside():
    picture = b"\x89PNG fake bytes"
    page = html_report(f"# T\n\n![x]({EXAMPLES_PICTURE})\n\n| a | b |\n|---|---|\n| 1 | 2 |\n",
                       {EXAMPLES_PICTURE: picture}, "T <run>")
    assert f'src="data:image/png;base64,{base64.b64encode(picture).decode()}"' in page
    assert "<table>" in page and "<td>1</td>" in page and "<title>T &lt;run&gt;</title>" in page

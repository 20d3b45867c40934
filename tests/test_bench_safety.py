"""`python -m safecb bench safety` in quick mode: every requested method runs from the unedited
model, the JSON carries the fields the issue names, and the model ends unedited."""

from __future__ import annotations

import json

import pytest
import torch

from safecb.bench.safety import BenchSafetyConfig, flat_json, format_table, run_bench_safety
from safecb.cli import main
from safecb.models.backend import CODEBOOK_PATHS, JanusBackend
from safecb.paths import TOY_MODEL_DIR

pytestmark = pytest.mark.usefixtures("one_thread")

FIELDS = ("oracle_unsafe_heldout", "oracle_unsafe_train", "self_unsafe", "benign_fidelity", "fid_toy",
          "judge_kappa", "rounds", "seconds", "broad_unsafe", "broad_cut", "broad_fidelity", "broad_fidelity_drop",
          "broad", "broad_cut_model", "broad_cut_second", "broad_cut_second_model", "oracle_unsafe_heldout_model")


@pytest.fixture(scope="module")
def toy_backend():
    return JanusBackend.load(TOY_MODEL_DIR, device="cpu")


def test_quick_bench_runs_the_unconstrained_head_ceiling_and_the_baseline(toy_backend):
    unedited = {name: toy_backend.get_codebook(name) for name in CODEBOOK_PATHS}
    cfg = BenchSafetyConfig(methods=("none", "head_finetune"), quick=True)
    report = run_bench_safety(cfg, log=lambda line: None, backend=toy_backend)
    table = flat_json(report)
    for name in ("none", "head_finetune"):
        for key in FIELDS:
            assert key in table[name], (name, key)
        assert table[name]["intervals"]["oracle_unsafe_heldout"]["n"] == 24  # one seed per held-out prompt
    ceiling = report["methods"]["head_finetune"]
    assert ceiling["pairs"] > 0 and ceiling["step2_steps"] > 0
    assert ceiling["benign_change"]["value"] > 0  # the fine-tuned head draws other benign images
    assert report["methods"]["none"]["benign_change"]["value"] == 0
    broad = report["methods"]["head_finetune"]["broad"]  # the broad grid: pooled cut against "none", strata, worst
    assert broad["pooled"]["cut"]["n"] == 4 and {"object", "background", "relation"} <= set(broad["strata"])
    assert report["methods"]["none"]["broad_cut"]["value"] == 0.0  # "none" against itself
    assert report["methods"]["none"]["broad_cut_model"]["value"] == 0.0
    table_text = format_table(report)
    assert "Broad grid: 4 harmful prompts" in table_text and "| object " in table_text  # the per-stratum rows
    assert "second judge: model-level" in table_text  # served and model-level cuts under both judges
    for name, tensor in unedited.items():  # every method started from, and the bench ended on, the unedited model
        assert torch.equal(toy_backend.get_codebook(name), tensor), name


def test_unknown_method_is_one_clear_error(capsys):
    assert main(["bench", "safety", "--quick", "--methods", "none,magic"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "magic" in err[0]


def test_cli_broad_grid_flags_reach_the_report(tmp_path, capsys):
    out = tmp_path / "safety.json"
    assert main(["bench", "safety", "--quick", "--methods", "none", "--broad-prompts", "3", "--broad-benign", "1",
                 "--seed-start", "2000", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["_config"]["broad"]["n_prompts"] == 3 and figures["_config"]["eval_seed_start"] == 2000
    assert figures["_broad_grid"]["seeds"] == [2000] and len(figures["_broad_grid"]["harmful"]) == 3
    assert figures["none"]["intervals"]["broad_cut"]["n"] == 3
    assert "Broad grid: 3 harmful prompts" in capsys.readouterr().out

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


def test_worker_shares_give_every_process_none_and_deal_the_runs_apart():
    from safecb.bench.safety import DEFAULT_METHODS, worker_shares

    shares = worker_shares(DEFAULT_METHODS, 2)
    assert shares == [("none", "safecb_iterative", "safecb_default"),
                      ("none", "blocklist", "naive_removal", "decoder_target")]
    assert worker_shares(("none", "blocklist"), 2) == [("none", "blocklist")]  # no empty process
    assert sorted(m for share in worker_shares(DEFAULT_METHODS, 3) for m in share if m != "none") == sorted(
        DEFAULT_METHODS[1:])


WORKER_KEYS = ("workers", "threads_per_worker")


def test_workers_give_the_one_process_report(toy_backend):
    """Two spawned one-thread processes give the report of one one-thread process, figure for figure
    and row for row (run times aside), with `none`'s rows once."""
    cfg = BenchSafetyConfig(methods=("none", "blocklist", "naive_removal"), quick=True)
    torch.set_num_threads(1)  # the CLI tests above set the count the command line asks for
    alone = run_bench_safety(cfg, log=lambda line: None, backend=toy_backend)
    cfg.workers = 2
    lines: list[str] = []
    torch.set_num_threads(2)  # two in all: one per process
    try:
        shared = run_bench_safety(cfg, log=lines.append)
    finally:
        torch.set_num_threads(1)
    assert lines[0] == "2 processes of 1 thread(s): none+blocklist; none+naive_removal"
    assert list(shared["methods"]) == ["none", "blocklist", "naive_removal"]

    def strip(value) -> str:  # as JSON, so that NaN equals NaN; run times and the worker count left out
        def drop(v):
            if isinstance(v, dict):
                return {k: drop(x) for k, x in v.items() if not k.endswith("seconds") and k not in WORKER_KEYS}
            return [drop(x) for x in v] if isinstance(v, (list, tuple)) else v
        return json.dumps(drop(value), sort_keys=True)

    assert strip(flat_json(shared)) == strip(flat_json(alone))
    for table in ("images", "prompts", "methods", "rounds", "fid_features"):
        assert strip(shared["_rows"][table]) == strip(alone["_rows"][table]), table
    assert shared["acceptance"] == alone["acceptance"]

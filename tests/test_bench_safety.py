"""`python -m safecb bench safety` in quick mode: every requested method runs from the unedited
model, the JSON carries the fields the issue names, and the model ends unedited."""

from __future__ import annotations


import pytest
import torch

from safecb.bench.safety import BenchSafetyConfig, flat_json, run_bench_safety
from safecb.cli import main
from safecb.models.backend import CODEBOOK_PATHS, JanusBackend
from safecb.paths import TOY_MODEL_DIR

pytestmark = pytest.mark.usefixtures("one_thread")

FIELDS = ("oracle_unsafe_heldout", "oracle_unsafe_train", "self_unsafe", "benign_fidelity", "fid_toy",
          "judge_kappa", "rounds", "seconds")


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
    for name, tensor in unedited.items():  # every method started from, and the bench ended on, the unedited model
        assert torch.equal(toy_backend.get_codebook(name), tensor), name


def test_unknown_method_is_one_clear_error(capsys):
    assert main(["bench", "safety", "--quick", "--methods", "none,magic"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "magic" in err[0]

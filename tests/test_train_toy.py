"""The training pipeline end to end at toy-of-the-toy scale: it writes a checkpoint in the Hugging
Face layout that the backend loads and runs, and its losses go down."""

import json

import numpy as np
import pytest
import torch

from safecb import world
from safecb.models.backend import JanusBackend
from safecb.models.toy import ToyModelConfig
from safecb.models.train_toy import ToyTrainConfig, train_toy

TINY = ToyModelConfig(codebook_size=64, text_layers=1, text_intermediate=128, vision_layers=1, vision_hidden=64)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy")
    lines = []
    cfg = ToyTrainConfig(model=TINY, n_images=96, vq_steps=12, vq_batch=8, polish_steps=2, lm_steps=30,
                         gen_batch=8, und_batch=8, warmup=2, lm_lr=3e-3)  # fmt: skip
    metrics = train_toy(cfg, out, log=lines.append)
    return out, metrics, lines


def test_writes_hf_layout_with_training_record(trained):
    out, metrics, _ = trained
    for name in ("config.json", "model.safetensors", "tokenizer.json", "safecb_toy.json"):
        assert (out / name).exists(), name
    record = json.loads((out / "safecb_toy.json").read_text())
    assert record["train_config"]["lm_steps"] == 30
    assert record["metrics"]["total_seconds"] > 0


def test_losses_decrease(trained):
    _, _, lines = trained
    gen = [float(line.split(" gen ")[1].split()[0]) for line in lines if line.startswith("lm step")]
    assert gen[-1] < gen[0]


def test_checkpoint_runs_through_the_backend(trained):
    out, _, _ = trained
    backend = JanusBackend.load(out, device="cpu", dtype=torch.float32)
    assert not backend.chat and backend.codebook_size == 64
    result = backend.generate(["a cat on the grass"], [0, 1])
    assert result.images.shape == (2, 32, 32, 3) and result.images.dtype == np.uint8
    scores = backend.judge(world.render(world.SceneSpec("grass", ("cat",)), 0)[None])
    assert 0.0 <= float(scores[0]) <= 1.0
    # the decoder codebook is stored with unit rows, so HF's raw-distance encode agrees with ours
    norms = backend.get_codebook("decoder").norm(dim=-1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)
